//! `idv demo`: the main job on the embedded defaults, narrated. For now that is the storage
//! core end to end: generate a call recording, seal it, verify it, read a range back, and
//! check the audit log. Later issues grow it into the whole session flow.

use std::io::{Read, Seek, SeekFrom};

use anyhow::{Context as _, ensure};
use sha2::{Digest, Sha256};

use super::{Context, human_bytes};

pub async fn run(ctx: &Context) -> anyhow::Result<()> {
    let data_dir = &ctx.storage.data_dir;
    let demo_dir = data_dir.join("demo");
    std::fs::create_dir_all(&demo_dir)
        .with_context(|| format!("cannot create {}", demo_dir.display()))?;
    let vault = ctx.vault().await?;
    let access = ctx.access(Some("demo".into()));
    println!("idv demo — data directory {}", data_dir.display());

    // One name per run, so running the demo again adds an archive instead of replacing one.
    let stamp = time::OffsetDateTime::now_utc().format(time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]"
    ))?;
    let sample = demo_dir.join(format!("cti-call-{stamp}.wav"));
    let track = fixtures::write_beep_wav(std::fs::File::create(&sample)?, 8000, 60)?;
    let original = std::fs::read(&sample)?;
    println!(
        "1. generated a 60 s CTI call recording ({} Hz mono, beep every second): {} ({})",
        track.sample_rate,
        sample.display(),
        human_bytes(original.len() as u64)
    );

    let archive = demo_dir.join(format!("cti-call-{stamp}.idvr"));
    let record = vault.seal_file(&sample, &archive, &access, |_| {}).await?;
    std::fs::remove_file(&sample)?;
    println!(
        "2. sealed it: {} (archive {}, AES-256-GCM in 64 KiB chunks, file key wrapped by {}); \
         removed the plaintext sample",
        archive.display(),
        record.archive_id,
        record.kek_id
    );

    let report = vault.verify_file(&archive, &access, |_| {}).await?;
    println!(
        "3. verified every chunk and the manifest: {} chunks intact",
        report.chunks
    );

    let reader = vault.open_file(&archive, &access).await?;
    let (head, digest) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut reader = reader;
        let mut head = [0u8; 12];
        reader.seek(SeekFrom::Start(0))?;
        reader.read_exact(&mut head)?;
        reader.seek(SeekFrom::Start(0))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok((head, hasher.finalize()))
    })
    .await??;
    ensure!(
        &head[..4] == b"RIFF" && &head[8..] == b"WAVE",
        "the decrypted range is not the WAV header"
    );
    ensure!(
        digest == Sha256::digest(&original),
        "the decrypted payload differs from the original"
    );
    println!(
        "4. read bytes 0-11 back by seeking (\"RIFF….WAVE\") and the whole payload: SHA-256 matches"
    );
    println!("   manifest: {}", report.manifest);

    match vault.audit().verify().await? {
        storage::audit::ChainReport::Intact { entries, head } => println!(
            "5. audit log intact: {entries} entries, head {}…  (idv --data-dir {} audit list)",
            &hex::encode(head)[..16],
            data_dir.display()
        ),
        broken => anyhow::bail!("audit log check failed: {broken:?}"),
    }
    let idv = std::env::current_exe().map_or_else(|_| "idv".into(), |p| p.display().to_string());
    println!(
        "done. Try: {idv} --data-dir {dir} verify {a}\n      or:  {idv} --data-dir {dir} open {a} --range 0-43 -o -",
        dir = data_dir.display(),
        a = archive.display()
    );
    Ok(())
}
