//! `idv seal`, `idv open`, `idv verify`, `idv manifest`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;

use super::{Context, human_bytes};
use crate::progress;

#[derive(Debug, Args)]
pub struct SealArgs {
    /// File to seal.
    input: PathBuf,
    /// Archive to write (`*.idvr`); written atomically.
    #[arg(short, long)]
    output: PathBuf,
    /// Why, for the audit log.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    /// Archive to decrypt.
    archive: PathBuf,
    /// Where to write the plaintext (`-` for stdout).
    #[arg(short, long)]
    output: PathBuf,
    /// Only bytes A through B inclusive (HTTP-style `A-B`; `A-` to the end).
    #[arg(long, value_parser = parse_range)]
    range: Option<ByteRange>,
    /// Why, for the audit log.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Archive to check.
    archive: PathBuf,
    /// Why, for the audit log.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Archive whose manifest to print.
    archive: PathBuf,
    /// Why, for the audit log.
    #[arg(long)]
    reason: Option<String>,
}

/// An inclusive byte range; `end` is `None` for "to the end".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    start: u64,
    end: Option<u64>,
}

fn parse_range(s: &str) -> Result<ByteRange, String> {
    let (a, b) = s.split_once('-').ok_or("expected A-B or A-")?;
    let start = a
        .trim()
        .parse()
        .map_err(|_| format!("bad range start {a:?}"))?;
    let end = match b.trim() {
        "" => None,
        b => Some(b.parse().map_err(|_| format!("bad range end {b:?}"))?),
    };
    if end.is_some_and(|e| e < start) {
        return Err(format!(
            "range end {} is before its start {start}",
            end.unwrap_or(0)
        ));
    }
    Ok(ByteRange { start, end })
}

pub async fn seal(ctx: &Context, args: SealArgs) -> anyhow::Result<()> {
    let size = std::fs::metadata(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?
        .len();
    let vault = ctx.vault().await?;
    let bar = progress::bytes(size, "sealing");
    let tick = bar.clone();
    let record = vault
        .seal_file(
            &args.input,
            &args.output,
            &ctx.access(args.reason),
            move |n| tick.set_position(n),
        )
        .await?;
    bar.finish_and_clear();
    println!(
        "sealed {} -> {} (archive {}, {} in, {} sealed, key {})",
        args.input.display(),
        args.output.display(),
        record.archive_id,
        human_bytes(record.payload_len),
        human_bytes(record.sealed_len),
        record.kek_id,
    );
    Ok(())
}

pub async fn open(ctx: &Context, args: OpenArgs) -> anyhow::Result<()> {
    let vault = ctx.vault().await?;
    let mut reader = vault
        .open_file(&args.archive, &ctx.access(args.reason))
        .await?;
    let total = reader.payload_len();
    let (start, len) = match args.range {
        None => (0, total),
        Some(r) => {
            if r.start > 0 && r.start >= total {
                bail!(
                    "range starts at byte {} but the payload has {total} bytes",
                    r.start
                );
            }
            let end = r.end.map_or(total, |e| (e + 1).min(total));
            (r.start, end.saturating_sub(r.start))
        }
    };
    let to_stdout = args.output.as_os_str() == "-";
    let output = args.output.clone();
    let bar = progress::bytes(len, "opening");
    let tick = bar.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        reader.seek(SeekFrom::Start(start))?;
        let mut limited = reader.take(len);
        if to_stdout {
            copy_with_progress(&mut limited, &mut std::io::stdout().lock(), &tick)?;
            return Ok(());
        }
        let staged = storage::StagedFile::create(&output)?;
        copy_with_progress(&mut limited, &mut staged.file(), &tick)?;
        staged.commit()?;
        Ok(())
    })
    .await??;
    bar.finish_and_clear();
    if !to_stdout {
        println!(
            "opened {} -> {} ({})",
            args.archive.display(),
            args.output.display(),
            human_bytes(len)
        );
    }
    Ok(())
}

fn copy_with_progress(
    from: &mut impl Read,
    to: &mut impl Write,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = from
            .read(&mut buf)
            .map_err(storage::archive::ArchiveError::from_io)?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n])?;
        bar.inc(n as u64);
    }
    to.flush()?;
    Ok(())
}

pub async fn verify(ctx: &Context, args: VerifyArgs) -> anyhow::Result<()> {
    let vault = ctx.vault().await?;
    let size = std::fs::metadata(&args.archive)
        .map(|m| m.len())
        .unwrap_or(0);
    let bar = progress::bytes(size, "verifying");
    let tick = bar.clone();
    let report = vault
        .verify_file(&args.archive, &ctx.access(args.reason), move |n| {
            tick.set_position(n)
        })
        .await
        .with_context(|| format!("verify failed for {}", args.archive.display()))?;
    bar.finish_and_clear();
    println!(
        "ok: {} is intact (archive {}, {} chunks, {})",
        args.archive.display(),
        report.archive_id,
        report.chunks,
        human_bytes(report.payload_len)
    );
    Ok(())
}

pub async fn manifest(ctx: &Context, args: ManifestArgs) -> anyhow::Result<()> {
    let vault = ctx.vault().await?;
    let reader = vault
        .open_file(&args.archive, &ctx.access(args.reason))
        .await?;
    let manifest = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        reader.manifest()
    })
    .await??;
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_http() {
        assert_eq!(
            parse_range("0-99"),
            Ok(ByteRange {
                start: 0,
                end: Some(99)
            })
        );
        assert_eq!(
            parse_range("100-"),
            Ok(ByteRange {
                start: 100,
                end: None
            })
        );
        assert!(parse_range("9-3").is_err());
        assert!(parse_range("x-3").is_err());
        assert!(parse_range("17").is_err());
    }
}
