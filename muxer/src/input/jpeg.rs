//! JPEG stills (the agent's screenshots) checked before anything decodes them: the marker
//! segments are walked (ITU-T T.81 Annex B) so a truncated or damaged picture is refused with
//! one line naming the frame, instead of a decoder silently dropping it mid-mux. Only the
//! framing is checked — damage inside the compressed picture data shows as a damaged picture,
//! as with any codec. The frame header gives the picture size.

/// What a JPEG's frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JpegHeader {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Start of image, end of image, start of scan.
const SOI: u8 = 0xd8;
const EOI: u8 = 0xd9;
const SOS: u8 = 0xda;

/// Whether `data` starts like a JPEG (start-of-image, then a marker).
pub(crate) fn looks_like_jpeg(data: &[u8]) -> bool {
    data.starts_with(&[0xff, SOI, 0xff])
}

/// Walks a whole JPEG: start-of-image, header segments, a supported frame header (baseline,
/// extended or progressive Huffman; one or three components), scans, end-of-image. Bytes
/// after the end-of-image marker are ignored.
///
/// # Errors
/// Why it is not a whole, decodable JPEG, as a phrase (`truncated: …`).
pub(crate) fn check(data: &[u8]) -> Result<JpegHeader, String> {
    if !looks_like_jpeg(data) {
        return Err("not a JPEG (no start-of-image marker)".into());
    }
    let mut at = 2;
    let mut header = None;
    loop {
        let marker = next_marker(data, &mut at)?;
        match marker {
            EOI => break,
            SOI => return Err("a second start-of-image marker".into()),
            0xd0..=0xd7 | 0x01 => {} // restart markers, TEM: no segment
            _ => {
                let body = segment(data, &mut at, marker)?;
                if is_frame_header(marker) {
                    if header.is_some() {
                        return Err("two frame headers".into());
                    }
                    header = Some(frame_header(marker, body)?);
                }
                if marker == SOS {
                    if header.is_none() {
                        return Err("a scan before the frame header".into());
                    }
                    skip_entropy_data(data, &mut at)?;
                }
            }
        }
    }
    header.ok_or_else(|| "no frame header (SOF)".into())
}

/// The marker at `at` (after any fill bytes), moving past it.
fn next_marker(data: &[u8], at: &mut usize) -> Result<u8, String> {
    if data.get(*at) != Some(&0xff) {
        return Err(match data.get(*at) {
            None => "truncated: no end-of-image marker".into(),
            Some(_) => format!("damaged: no marker at byte {}", *at),
        });
    }
    while data.get(*at) == Some(&0xff) {
        *at += 1;
    }
    let marker = *data.get(*at).ok_or("truncated: no end-of-image marker")?;
    *at += 1;
    Ok(marker)
}

/// A segment's body (after its two length bytes), moving past it.
fn segment<'a>(data: &'a [u8], at: &mut usize, marker: u8) -> Result<&'a [u8], String> {
    let length = data
        .get(*at..*at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or("truncated in a segment header")?;
    if length < 2 {
        return Err(format!(
            "damaged: marker 0x{marker:02x} with length {length}"
        ));
    }
    let body = data
        .get(*at + 2..*at + length)
        .ok_or_else(|| format!("truncated inside the 0x{marker:02x} segment"))?;
    *at += length;
    Ok(body)
}

/// SOF0–SOF15 (0xc0–0xcf) less DHT (0xc4), JPG (0xc8) and DAC (0xcc).
fn is_frame_header(marker: u8) -> bool {
    (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc)
}

fn frame_header(marker: u8, body: &[u8]) -> Result<JpegHeader, String> {
    if !matches!(marker, 0xc0..=0xc2) {
        return Err(format!(
            "a kind of JPEG the decoder does not take (frame marker 0x{marker:02x}; baseline, \
             extended or progressive only)"
        ));
    }
    if body.len() < 6 {
        return Err("damaged frame header".into());
    }
    let height = u32::from(u16::from_be_bytes([body[1], body[2]]));
    let width = u32::from(u16::from_be_bytes([body[3], body[4]]));
    let components = body[5];
    if width == 0 || height == 0 {
        return Err(format!("a picture of {width}×{height} pixels"));
    }
    if !matches!(components, 1 | 3) || body.len() < 6 + 3 * usize::from(components) {
        return Err(format!(
            "{components} colour components (grey or YCbCr only)"
        ));
    }
    Ok(JpegHeader { width, height })
}

/// Moves past a scan's entropy-coded data: up to the next marker that is neither a stuffed
/// zero nor a restart marker.
fn skip_entropy_data(data: &[u8], at: &mut usize) -> Result<(), String> {
    while let Some(offset) = data[*at..].iter().position(|&b| b == 0xff) {
        let next = *at + offset + 1;
        match data.get(next) {
            Some(0x00 | 0xd0..=0xd7) => *at = next + 1,
            Some(0xff) => *at = next,
            Some(_) => {
                *at = next - 1;
                return Ok(());
            }
            None => break,
        }
    }
    Err("truncated: no end-of-image marker".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A structurally complete 3×2 baseline JPEG (the scan's data is not a real picture).
    fn minimal() -> Vec<u8> {
        let mut j = vec![0xff, SOI];
        // APP0 (JFIF-ish), length 7.
        j.extend([0xff, 0xe0, 0, 7, b'J', b'F', b'I', b'F', 0]);
        // SOF0: length 17, precision 8, height 2, width 3, 3 components.
        j.extend([0xff, 0xc0, 0, 17, 8, 0, 2, 0, 3, 3]);
        j.extend([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        // SOS: length 12, 3 components.
        j.extend([0xff, SOS, 0, 12, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0]);
        // Entropy data with a stuffed 0xff and a restart marker.
        j.extend([0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56]);
        j.extend([0xff, EOI]);
        j
    }

    #[test]
    fn a_whole_jpeg_says_its_size() {
        let j = minimal();
        assert!(looks_like_jpeg(&j));
        assert_eq!(
            check(&j),
            Ok(JpegHeader {
                width: 3,
                height: 2
            })
        );
        let mut padded = j.clone();
        padded.extend([0, 0, 0]);
        assert!(check(&padded).is_ok(), "bytes after the end are ignored");
    }

    #[test]
    fn damaged_or_truncated_jpegs_say_why() {
        let j = minimal();
        for cut in [3, 10, 20, 40, j.len() - 1] {
            let e = check(&j[..cut]).unwrap_err();
            assert!(e.contains("truncated"), "cut at {cut}: {e}");
        }
        assert!(check(b"GIF89a").unwrap_err().starts_with("not a JPEG"));
        let mut no_sof = j.clone();
        no_sof.drain(11..30);
        assert!(check(&no_sof).is_err());
        let mut zero = j.clone();
        zero[19] = 0; // width 3 → 0
        assert!(
            check(&zero).unwrap_err().contains("0×2"),
            "{:?}",
            check(&zero)
        );
        let mut lossless = j.clone();
        lossless[12] = 0xc3;
        assert!(check(&lossless).unwrap_err().contains("0xc3"));
        let mut bad_length = j.clone();
        bad_length[5] = 1;
        assert!(check(&bad_length).unwrap_err().contains("damaged"));
        let mut garbage = j.clone();
        garbage[11] = 0x42; // where the SOF marker's 0xff was
        assert!(check(&garbage).unwrap_err().contains("no marker"));
    }
}
