//! Criterion benches live in `benches/`, load generators and peer comparisons in `src/bin/`.
//! The library holds what those share: [`screen_clip`], the screen-activity clip of the
//! screen-codec bench.

pub mod screen_clip;
