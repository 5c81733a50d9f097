//! Shared by the integration tests: a small deterministic generator (SplitMix64), so the
//! property-style tests explore many inputs and still fail the same way on every run.

#![allow(dead_code)]

use proto::{FrameFlags, FrameHeader, SessionKey, Track};
use uuid::Uuid;

/// SplitMix64: tiny, fast, and good enough to spread test inputs.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.u64() as u8).collect()
    }

    pub fn track(&mut self) -> Track {
        Track::ALL[self.below(Track::ALL.len())]
    }

    pub fn flags(&mut self) -> FrameFlags {
        FrameFlags::from_bits(self.u64() as u8 & 0x07).unwrap()
    }

    /// Sequence numbers near both ends and in between.
    pub fn seq(&mut self) -> u64 {
        match self.below(3) {
            0 => 1 + self.below(100) as u64,
            1 => u64::MAX - self.below(100) as u64,
            _ => self.u64().max(1),
        }
    }

    pub fn header(&mut self) -> FrameHeader {
        FrameHeader::new(self.track(), self.seq(), self.u64() as i64).with_flags(self.flags())
    }
}

pub fn session() -> Uuid {
    Uuid::from_u128(0x5e55_1010_0000_4000_8000_0000_0000_0001)
}

pub fn other_session() -> Uuid {
    Uuid::from_u128(0x5e55_1010_0000_4000_8000_0000_0000_0002)
}

pub fn key() -> SessionKey {
    SessionKey::from_bytes([0x5A; 32])
}
