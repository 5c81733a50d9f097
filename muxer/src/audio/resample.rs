//! Puts a CTI recording onto the output's sample grid in one step: each output sample `n`
//! (at the output rate, `n = 0` at the in point) reads the recording at the exact fractional
//! position where the shared timeline says it was captured, `x = x₀ + n·step`, with a
//! windowed-sinc interpolator. That single mapping does the offset (sub-sample), the drift
//! correction (`step` = effective recorder rate ÷ output rate, so a clock 300 ppm fast is
//! stretched back, never by dropping or repeating samples) and the rate change. Positions
//! outside the recording read silence: a hole stays a hole in time.

/// Taps each side of the interpolation point.
const HALF: usize = 8;
const TAPS: usize = 2 * HALF;
/// Fractional positions tabulated (linear interpolation between neighbours).
const PHASES: usize = 512;

/// Streams input frames in and output frames (16-bit, interleaved) out.
pub struct Resampler {
    channels: usize,
    x0: f64,
    step: f64,
    next: u64,
    /// Input frames kept, one buffer per channel; `buf_start` is the input index of the first.
    buf: Vec<Vec<f32>>,
    buf_start: i64,
    input_end: Option<i64>,
    table: Vec<[f32; TAPS]>,
}

impl Resampler {
    /// Output sample `n` reads input position `x0 + n·step` (in input frames).
    ///
    /// # Panics
    /// If `channels` is 0 or `step` is not positive.
    #[must_use]
    pub fn new(channels: usize, x0: f64, step: f64) -> Self {
        assert!(
            channels > 0 && step > 0.0,
            "channels and step must be positive"
        );
        // Cut off a little below the lower of the two Nyquist frequencies.
        let cutoff = 0.94 * (1.0 / step).min(1.0);
        let table = (0..=PHASES)
            .map(|p| {
                let frac = p as f64 / PHASES as f64;
                let mut w = [0f32; TAPS];
                let mut sum = 0.0;
                for (t, slot) in w.iter_mut().enumerate() {
                    let d = t as f64 - (HALF as f64 - 1.0) - frac;
                    let v = sinc(cutoff * d) * blackman(d / HALF as f64);
                    *slot = v as f32;
                    sum += v;
                }
                for slot in &mut w {
                    *slot = (f64::from(*slot) / sum) as f32;
                }
                w
            })
            .collect();
        Self {
            channels,
            x0,
            step,
            next: 0,
            buf: vec![Vec::new(); channels],
            buf_start: 0,
            input_end: None,
            table,
        }
    }

    /// Appends interleaved input frames (in order, from input frame 0).
    pub fn push(&mut self, input: &[f32]) {
        if self.channels == 1 {
            self.buf[0].extend_from_slice(input);
            return;
        }
        for frame in input.chunks_exact(self.channels) {
            for (channel, &sample) in self.buf.iter_mut().zip(frame) {
                channel.push(sample);
            }
        }
    }

    fn buffered_end(&self) -> i64 {
        self.buf_start + self.buf[0].len() as i64
    }

    /// No more input: positions past what was pushed read silence.
    pub fn finish(&mut self) {
        self.input_end = Some(self.buffered_end());
    }

    /// The input position of output sample `n`: the frame at or before it, and the offset.
    fn position(&self, n: u64) -> (i64, f64) {
        let x = self.x0 + n as f64 * self.step;
        let mut base = x as i64; // toward zero: one less for negative fractions
        if base as f64 > x {
            base -= 1;
        }
        (base, x - base as f64)
    }

    /// Makes as many of the next output frames as the input pushed so far allows, at most
    /// `max_frames`, appending them to `out`; returns how many.
    pub fn produce(&mut self, out: &mut Vec<i16>, max_frames: usize) -> usize {
        let buffered_end = self.buffered_end();
        let mut made = 0;
        out.reserve(max_frames * self.channels);
        while made < max_frames {
            let (base, frac) = self.position(self.next);
            if self.input_end.is_none() && base + HALF as i64 >= buffered_end {
                break;
            }
            let phase = frac * PHASES as f64;
            let p = (phase as usize).min(PHASES - 1);
            let t = (phase - p as f64) as f32;
            let w = weights(&self.table[p], &self.table[p + 1], t);
            let first = base - (HALF as i64 - 1);
            if first >= self.buf_start && first + TAPS as i64 <= buffered_end {
                let at = (first - self.buf_start) as usize;
                for channel in &self.buf {
                    let taps: &[f32; TAPS] =
                        channel[at..at + TAPS].try_into().expect("TAPS samples");
                    out.push(to_i16(dot(&w, taps)));
                }
            } else {
                // Near an end of the recording: missing samples are silence.
                for channel in &self.buf {
                    let mut taps = [0f32; TAPS];
                    for (k, slot) in taps.iter_mut().enumerate() {
                        let idx = first + k as i64;
                        if idx >= self.buf_start && idx < buffered_end {
                            *slot = channel[(idx - self.buf_start) as usize];
                        }
                    }
                    out.push(to_i16(dot(&w, &taps)));
                }
            }
            self.next += 1;
            made += 1;
        }
        self.compact();
        made
    }

    /// Drops input frames no future output sample reads.
    fn compact(&mut self) {
        let (base, _) = self.position(self.next);
        let keep_from = base - HALF as i64;
        let frames = self.buf[0].len();
        let drop = (keep_from - self.buf_start).max(0) as usize;
        if drop > 0 && drop * 2 >= frames.max(1) {
            let drop = drop.min(frames);
            for channel in &mut self.buf {
                channel.drain(..drop);
            }
            self.buf_start += drop as i64;
        }
    }
}

/// The filter at a fractional phase: linear between the two tabulated neighbours.
#[inline]
fn weights(lo: &[f32; TAPS], hi: &[f32; TAPS], t: f32) -> [f32; TAPS] {
    let mut w = [0f32; TAPS];
    for k in 0..TAPS {
        w[k] = lo[k] + (hi[k] - lo[k]) * t;
    }
    w
}

/// `Σ w·x`, summed as a tree so the compiler can keep it in vector registers.
#[inline]
fn dot(w: &[f32; TAPS], x: &[f32; TAPS]) -> f32 {
    let mut p = [0f32; TAPS];
    for k in 0..TAPS {
        p[k] = w[k] * x[k];
    }
    let mut half = [0f32; TAPS / 2];
    for k in 0..TAPS / 2 {
        half[k] = p[k] + p[k + TAPS / 2];
    }
    let mut quarter = [0f32; TAPS / 4];
    for k in 0..TAPS / 4 {
        quarter[k] = half[k] + half[k + TAPS / 4];
    }
    (quarter[0] + quarter[2]) + (quarter[1] + quarter[3])
}

/// Full scale to 16 bits, rounded half away from zero, clipped.
#[inline]
fn to_i16(v: f32) -> i16 {
    let scaled = v * 32767.0;
    let rounded = scaled + if scaled >= 0.0 { 0.5 } else { -0.5 };
    rounded.clamp(-32768.0, 32767.0) as i16
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

fn blackman(u: f64) -> f64 {
    if u.abs() >= 1.0 {
        return 0.0;
    }
    let a = std::f64::consts::PI * u;
    0.42 + 0.5 * a.cos() + 0.08 * (2.0 * a).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[f32], x0: f64, step: f64, frames: usize) -> Vec<i16> {
        let mut r = Resampler::new(1, x0, step);
        r.push(input);
        r.finish();
        let mut out = Vec::new();
        while out.len() < frames {
            let left = frames - out.len();
            assert!(r.produce(&mut out, left) > 0);
        }
        out
    }

    fn tone(freq: f64, rate: f64, from: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * freq * (from + i as f64) / rate).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn a_tone_comes_out_at_the_right_phase_after_a_fractional_shift_and_rate_change() {
        // 1 kHz at 8 kHz, read from position 100.37 at 6× the rate (8 k → 48 k).
        let input = tone(1000.0, 8000.0, 0.0, 8000);
        let out = run(&input, 100.37, 1.0 / 6.0, 6000);
        let expected = tone(1000.0, 48_000.0, 100.37 * 6.0, 6000);
        let worst = out
            .iter()
            .zip(&expected)
            .map(|(&o, &e)| (f32::from(o) / 32767.0 - e).abs())
            .fold(0f32, f32::max);
        assert!(worst < 0.01, "worst error {worst}");
    }

    #[test]
    fn positions_outside_the_recording_are_silence() {
        let input = vec![0.5f32; 100];
        let out = run(&input, -50.0, 1.0, 300);
        assert!(out[..40].iter().all(|&s| s == 0), "before the start");
        assert!(
            out[60..140]
                .iter()
                .all(|&s| (i32::from(s) - 16384).abs() < 200)
        );
        assert!(out[170..].iter().all(|&s| s == 0), "after the end");
    }

    #[test]
    fn drift_is_stretched_out_sample_for_sample() {
        // An impulse every 1000 input samples on a clock 300 ppm fast lands every
        // 1000 / 1.0003 output samples — after 30 of them, 9 samples earlier than nominal.
        let mut input = vec![0f32; 31_000];
        for k in 0..31 {
            input[k * 1000] = 1.0;
        }
        let step = 1.0003;
        let out = run(&input, 0.0, step, 31_000);
        let peak = |around: usize| {
            (around - 20..around + 20)
                .max_by_key(|&i| out[i])
                .expect("non-empty")
        };
        let expected = (30_000.0 / step).round() as usize;
        assert_eq!(peak(expected), expected);
    }
}
