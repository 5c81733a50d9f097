//! The vault end to end on both stacks: the embedded default (SQLite + local blobs) and the
//! scale-out one (PostgreSQL + a real S3 server on loopback). Archives are streamed into the
//! blob store, read back through random-access range reads, rewrapped by key rotation,
//! crypto-shredded — and a failed upload leaves no object, no key and an audited failure.

#[path = "common/pg.rs"]
mod pg;
#[path = "common/s3.rs"]
mod s3_server;

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, ensure};
use storage::archive::ArchiveError;
use storage::audit::ChainReport;
use storage::blob::BlobStore;
use storage::db::MetadataDb;
use storage::keyring::FileKeyring;
use storage::{Access, Error, Vault};
use tokio::io::{AsyncRead, ReadBuf};

const PAYLOAD_LEN: usize = 12 * 1024 * 1024 + 4321; // several multipart parts

/// Yields `good` bytes of data, then an I/O error: a CTI upload that breaks off.
struct BreaksOff {
    data: Vec<u8>,
    pos: usize,
}

impl AsyncRead for BreaksOff {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos >= self.data.len() {
            return Poll::Ready(Err(std::io::Error::other("connection reset by peer")));
        }
        let n = buf.remaining().min(self.data.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

async fn read_blob_archive(
    vault: &Vault,
    key: &str,
) -> anyhow::Result<(Vec<u8>, serde_json::Value)> {
    let reader = vault
        .open_blob(key, &Access::new("test", Some("check".into())))
        .await?;
    tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let report = reader.verify(|_| {})?;
        let mut plain = Vec::new();
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(0))?;
        reader.read_to_end(&mut plain)?;
        Ok((plain, report.manifest))
    })
    .await?
}

async fn lifecycle(vault: Vault) -> anyhow::Result<()> {
    let access = Access::new("muxer@test", None);
    let plain = fixtures::pseudo_random_bytes(11, PAYLOAD_LEN);
    let key = "recordings/2026/11/session-1.idvr";
    let manifest = serde_json::json!({ "session": "s-1", "bytes": PAYLOAD_LEN });
    let record = vault
        .seal_to_blob(plain.as_slice(), key, manifest.clone(), &access)
        .await?;
    ensure!(record.location == format!("blob:{key}"));
    ensure!(record.payload_len == PAYLOAD_LEN as u64);
    ensure!(vault.blobs().size(key).await? == record.sealed_len);

    let (back, got_manifest) = read_blob_archive(&vault, key).await?;
    ensure!(back == plain, "blob archive round trip differs");
    ensure!(got_manifest == manifest);

    // A source that breaks off: no object, no archive record, no orphaned key; audited.
    let broken_key = "recordings/2026/11/session-2.idvr";
    let source = BreaksOff {
        data: plain[..7 * 1024 * 1024].to_vec(),
        pos: 0,
    };
    let err = vault
        .seal_to_blob(source, broken_key, serde_json::json!({}), &access)
        .await
        .expect_err("a broken source must fail the seal");
    ensure!(err.to_string().contains("connection reset"), "{err}");
    ensure!(
        vault.blobs().size(broken_key).await.is_err(),
        "a partial archive was left behind"
    );
    ensure!(vault.db().archives().await?.len() == 1);

    // A producer that writes into the seal (the mux worker): the manifest comes last.
    let produced_key = "recordings/2026/11/session-3.idvr";
    let produced = plain[..3 * 1024 * 1024 + 17].to_vec();
    let expected = produced.clone();
    let mux_record = vault
        .seal_into_blob(produced_key, "archive.mux", &access, move |out| {
            for part in produced.chunks(100_000) {
                out.write_all(part)?;
            }
            Ok(serde_json::json!({ "kind": "mux", "bytes": produced.len() }))
        })
        .await?;
    // Opened once (audited once), read as often as a demuxer likes.
    let sealed = vault.sealed_blob(produced_key, &access).await?;
    ensure!(sealed.archive_id() == mux_record.archive_id);
    let twice = tokio::task::spawn_blocking(move || -> anyhow::Result<[Vec<u8>; 2]> {
        let mut reads = [Vec::new(), Vec::new()];
        for read in &mut reads {
            sealed.open()?.read_to_end(read)?;
        }
        Ok(reads)
    })
    .await??;
    ensure!(twice[0] == expected && twice[1] == expected);
    // A producer that fails part-way: nothing under the key, no record, no key.
    let failed_key = "recordings/2026/11/session-4.idvr";
    let archives_before = vault.db().archives().await?.len();
    let err = vault
        .seal_into_blob(failed_key, "archive.mux", &access, |out| {
            out.write_all(&[7u8; 9 * 1024 * 1024])?;
            Err(Error::Task("the pipeline stopped".into()))
        })
        .await
        .expect_err("a failing producer fails the seal");
    ensure!(err.to_string().contains("pipeline stopped"), "{err}");
    ensure!(
        vault.blobs().size(failed_key).await.is_err(),
        "a partial archive was left"
    );
    ensure!(vault.db().archives().await?.len() == archives_before);
    // A result nobody may keep is discarded: bytes, record and key.
    vault
        .discard_archive(mux_record.archive_id, &access)
        .await?;
    ensure!(vault.blobs().size(produced_key).await.is_err());
    ensure!(vault.db().archive(mux_record.archive_id).await?.is_none());
    ensure!(vault.db().retention_key(mux_record.key_id).await?.is_none());

    // Rotation rewrites the header in the blob store; the sealed chunks are byte-identical.
    let header_len = |bytes: &[u8]| usize::from(u16::from_le_bytes([bytes[10], bytes[11]]));
    let before = vault.blobs().get_range(key, 0..record.sealed_len).await?;
    let report = vault.rotate_keys(&access).await?;
    ensure!(report.rewrapped == vec![record.archive_id], "{report:?}");
    ensure!(
        report.destroyed_keks == vec!["kek-0001".to_owned()],
        "{report:?}"
    );
    let after = vault
        .blobs()
        .get_range(key, 0..vault.blobs().size(key).await?)
        .await?;
    ensure!(
        after[header_len(&after)..] == before[header_len(&before)..],
        "payload was re-encrypted"
    );
    let rewrapped = vault
        .db()
        .archive(record.archive_id)
        .await?
        .context("record")?;
    ensure!(rewrapped.kek_id == report.active_kek);
    ensure!(read_blob_archive(&vault, key).await?.0 == plain);

    // Crypto-shred: the archive in the blob store is unreadable from now on.
    vault
        .shred(
            record.archive_id,
            &Access::new("retention", Some("retention ended".into())),
        )
        .await?;
    match vault.open_blob(key, &access).await {
        Err(Error::Archive(ArchiveError::Shredded { archive_id, .. })) => {
            ensure!(archive_id == record.archive_id)
        }
        other => anyhow::bail!("expected a shredded archive, got {:?}", other.map(|_| ())),
    }

    let entries = vault.audit().latest(100).await?;
    let actions: Vec<(&str, String)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.to_string()))
        .collect();
    ensure!(
        actions
            .iter()
            .any(|(a, o)| *a == "archive.seal" && o == "failed"),
        "{actions:?}"
    );
    ensure!(
        actions.iter().any(|(a, _)| *a == "keys.rotate")
            && actions.iter().any(|(a, _)| *a == "archive.shred")
    );
    ensure!(matches!(
        vault.audit().verify().await?,
        ChainReport::Intact { .. }
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_local_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(FileKeyring::open(dir.path()).unwrap());
    let db = MetadataDb::open(dir.path(), None).await.unwrap();
    let blobs = BlobStore::open(dir.path(), None).unwrap();
    lifecycle(Vault::from_parts(keyring, db, blobs))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_s3() {
    let Some(server) = s3_server::S3Server::start().unwrap() else {
        return;
    };
    pg::run(|schema| async move {
        let dir = tempfile::tempdir()?;
        let keyring = Arc::new(FileKeyring::open(dir.path())?);
        let db = MetadataDb::connect_in_schema(&schema.url, &schema.name).await?;
        let blobs = server.store("recordings", "bank-a")?;
        lifecycle(Vault::from_parts(keyring, db, blobs)).await?;
        ensure!(
            server.upload_leftovers().is_empty(),
            "aborted upload left parts on the server"
        );
        Ok(())
    })
    .await;
}
