//! Just enough of H.264's AVC framing (ISO/IEC 14496-15) to splice a re-encoded first GOP
//! in front of passed-through frames: read the parameter sets out of an `avcC` record and put
//! them in-band before a keyframe (the `avc3` form, where each IDR carries its own SPS/PPS,
//! so a decoder switches cleanly from the re-encoded frames to the original ones).

/// The parameter sets and NAL length size of an `avcC` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    /// Bytes of each NAL unit's length prefix (1, 2 or 4).
    pub length_size: usize,
    /// SPS then PPS NAL units, without length prefixes.
    pub nals: Vec<Vec<u8>>,
}

impl ParameterSets {
    /// Parses an `avcC` (AVCDecoderConfigurationRecord); `None` if it is malformed.
    #[must_use]
    pub fn from_avcc(record: &[u8]) -> Option<Self> {
        if record.len() < 7 || record[0] != 1 {
            return None;
        }
        let length_size = usize::from(record[4] & 0x03) + 1;
        let mut nals = Vec::new();
        let mut at = 5;
        let sps_count = usize::from(*record.get(at)? & 0x1f);
        at += 1;
        for _ in 0..sps_count {
            at = take_nal(record, at, &mut nals)?;
        }
        let pps_count = usize::from(*record.get(at)?);
        at += 1;
        for _ in 0..pps_count {
            at = take_nal(record, at, &mut nals)?;
        }
        Some(Self { length_size, nals })
    }

    /// `frame` (length-prefixed NAL units of `from_length_size` bytes) re-framed with this
    /// record's length size and, if `in_band`, these parameter sets first.
    #[must_use]
    pub fn frame(&self, frame: &[u8], from_length_size: usize, in_band: bool) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(frame.len() + 64);
        if in_band {
            for nal in &self.nals {
                push_nal(&mut out, nal, self.length_size);
            }
        }
        let mut at = 0;
        while at < frame.len() {
            let len_bytes = frame.get(at..at + from_length_size)?;
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            at += from_length_size;
            let nal = frame.get(at..at + len)?;
            push_nal(&mut out, nal, self.length_size);
            at += len;
        }
        Some(out)
    }
}

fn take_nal(record: &[u8], at: usize, nals: &mut Vec<Vec<u8>>) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([*record.get(at)?, *record.get(at + 1)?]));
    let nal = record.get(at + 2..at + 2 + len)?;
    nals.push(nal.to_vec());
    Some(at + 2 + len)
}

fn push_nal(out: &mut Vec<u8>, nal: &[u8], length_size: usize) {
    let len = nal.len() as u64;
    for i in (0..length_size).rev() {
        out.push((len >> (8 * i)) as u8);
    }
    out.extend_from_slice(nal);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Vec<u8> {
        // version 1, profile 66, compat 0, level 30, 4-byte lengths, 1 SPS, 1 PPS.
        let mut r = vec![1, 66, 0, 30, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 9];
        r.truncate(16);
        r
    }

    #[test]
    fn parameter_sets_come_out_of_an_avcc_record() {
        let ps = ParameterSets::from_avcc(&record()).unwrap();
        assert_eq!(ps.length_size, 4);
        assert_eq!(ps.nals, vec![vec![0x67, 1, 2], vec![0x68, 9]]);
        assert!(
            ParameterSets::from_avcc(&record()[..9]).is_none(),
            "truncated"
        );
    }

    #[test]
    fn a_frame_gets_its_parameter_sets_in_band_and_the_right_length_size() {
        let ps = ParameterSets::from_avcc(&record()).unwrap();
        let frame = [0, 2, 0x65, 7]; // one IDR NAL with a 2-byte length
        let out = ps.frame(&frame, 2, true).unwrap();
        assert_eq!(
            out,
            vec![
                0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x68, 9, 0, 0, 0, 2, 0x65, 7
            ]
        );
        assert!(
            ps.frame(&[0, 9, 1], 2, false).is_none(),
            "length past the end"
        );
    }
}
