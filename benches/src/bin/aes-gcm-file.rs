//! The peer's encryption step in the mux bench: `aes-gcm-file IN OUT` seals IN with the raw
//! AES-256-GCM primitive (`aes-gcm`, the crate idv's archive uses) in 64 KiB chunks with a
//! counter nonce — the least any encrypted-at-rest pipeline must do, with no header, key
//! wrapping or manifest.

use std::fs::File;
use std::io::{BufWriter, Read, Write};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = args.next().ok_or("usage: aes-gcm-file IN OUT")?;
    let output = args.next().ok_or("usage: aes-gcm-file IN OUT")?;
    let cipher = Aes256Gcm::new(&[7u8; 32].into());
    let mut reader = File::open(input)?;
    let mut writer = BufWriter::with_capacity(1 << 20, File::create(output)?);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut counter = 0u64;
    loop {
        let mut filled = 0;
        while filled < chunk.len() {
            let n = reader.read(&mut chunk[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        let tag = cipher
            .encrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(nonce),
                b"",
                (&mut chunk[..filled]).into(),
            )
            .map_err(|_| "encryption failed")?;
        writer.write_all(&chunk[..filled])?;
        writer.write_all(&tag)?;
        counter += 1;
        if filled < chunk.len() {
            break;
        }
    }
    writer.flush()?;
    Ok(())
}
