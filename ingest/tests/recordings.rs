//! Recordings as the mux jobs leave them: listed with their status, downloadable (sealed, as
//! stored) once muxed, refused before with a clear reason; every download audited. The mux
//! worker is stood in for by claiming and completing the job with a sealed archive.

mod common;

use std::time::Duration;

use common::Harness;
use ingest::client::{ClientError, OperatorClient};
use storage::Access;

#[tokio::test]
async fn a_muxed_recording_is_listed_and_downloads_sealed() {
    let h = Harness::new(|c| c.cti_deadline = Duration::ZERO).await;
    let client = OperatorClient::new(
        &h.server().url(),
        &h.dir.path().join("tls/cert.pem"),
        &h.dir.path().join("operator.token"),
    )
    .unwrap();
    let s = h.consented_session(&["camera"]).await;
    assert!(
        client.recordings().await.unwrap().is_empty(),
        "nothing until the session ends"
    );
    let r = h
        .http
        .post(h.url(&format!("/sessions/{}/end", s.session)))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let listed = client.recordings().await.unwrap();
    assert_eq!(
        (listed[0].session_id, listed[0].status.as_str()),
        (s.session, "queued")
    );

    let out = h.dir.path().join("download.idvr");
    match client.download(s.session, &out).await {
        Err(ClientError::Refused {
            status: 404,
            reason,
        }) => {
            assert_eq!(reason, "the recording is not muxed yet (queued)");
        }
        other => panic!("{other:?}"),
    }
    assert!(!out.exists(), "nothing written for a refusal");

    // A worker muxes it (here: any bytes, sealed into the blob store) and completes the job.
    let db = h.vault.db();
    let now = time::OffsetDateTime::now_utc();
    let job = db
        .claim_mux_job("test-worker", now, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let content = b"pretend this is a muxed MP4".repeat(5000);
    let archive = h
        .vault
        .seal_to_blob(
            &content[..],
            &format!("recordings/{}.idvr", s.session),
            serde_json::json!({ "kind": "mux" }),
            &Access::new("system:test", None),
        )
        .await
        .unwrap();
    assert!(
        db.complete_mux_job(job.job_id, "test-worker", archive.archive_id, now)
            .await
            .unwrap()
    );

    let listed = client.recordings().await.unwrap();
    assert_eq!(listed[0].status, "video-only", "no CTI recording came");
    assert_eq!(listed[0].archive_id, Some(archive.archive_id));
    let bytes = client.download(s.session, &out).await.unwrap();
    assert_eq!(bytes, archive.sealed_len);
    let mut reader = h
        .vault
        .open_file(&out, &Access::new("system:test", None))
        .await
        .unwrap();
    let mut opened = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut opened).unwrap();
    assert_eq!(opened, content, "the download is the sealed archive, whole");
    let downloads = h
        .vault
        .audit()
        .entries(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "recording.download")
        .map(|e| e.outcome.as_str().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(downloads, ["denied", "success"]);
}
