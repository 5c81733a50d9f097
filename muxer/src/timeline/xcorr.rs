//! How late one recording of a sound is against another: GCC-PHAT (generalised
//! cross-correlation with the phase transform) over windows of two signals already on one
//! sample grid, the windows combined by summing their correlation functions, the peak found
//! to a fraction of a sample, and a confidence from how far that peak stands out.
//!
//! Pure arithmetic over `&[f32]`; reading and placing the recordings is [`crate::align`]'s.
//!
//! **Sign.** A positive delay means the CTI's content comes *later* than the reference's:
//! `cti[i + d] ≈ reference[i]`. A CTI placed by a call record whose start is 0.73 s late
//! shows a delay of +0.73 s, and the record's start is corrected by −0.73 s.
//!
//! **Phase transform.** The cross-power spectrum `C·R̄` is divided by its magnitude, bin by
//! bin, so every frequency in the band counts the same whatever its loudness: voice,
//! whose energy sits in a few hundred hertz, gives a peak one sample wide instead of a hump
//! tens of samples wide, and a gain or a codec's colouring changes nothing. Bins outside
//! [`Band`] (hum, and the resampler's roll-off towards Nyquist) are left out.
//!
//! **Windows.** Each window pairs `n` reference samples with the `n + 2·max_lag` CTI samples
//! around them (`max_lag` before, `max_lag` after), so every lag in `±max_lag` sees the whole
//! reference window — no overlap lost at large lags. Windows are combined by **summing their
//! GCC functions** lag by lag: the true lag adds up in every window, the spurious peaks of
//! each (noise, a repeated sound) do not, so a weak match spread over a long call still
//! stands out, and one window of silence or noise costs little.
//!
//! **Confidence** = `1 − runner-up ÷ peak`, where the runner-up is the highest value of the
//! combined function more than [`EXCLUSION_S`] from the peak: 0 when another lag is as
//! likely, near 1 when nothing else comes close. Unrelated signals give a function of noise
//! whose two highest values are close (≈ 0.1); the same voice through two microphones and
//! codecs, well above 0.5.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// The runner-up peak is looked for this far from the peak and beyond, seconds: wider than
/// the main lobe of any content in the band, narrower than a syllable.
pub const EXCLUSION_S: f64 = 0.005;

/// The frequencies that count, hertz.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Lowest frequency used.
    pub low_hz: f64,
    /// Highest frequency used.
    pub high_hz: f64,
}

impl Band {
    /// Telephone speech at an 8 kHz analysis rate: 100 Hz (above hum) to 3.6 kHz (below the
    /// resampler's anti-alias roll-off at 0.94 × 4 kHz).
    pub const SPEECH: Self = Self {
        low_hz: 100.0,
        high_hz: 3600.0,
    };
}

/// The GCC-PHAT function of one window: element `i` is the correlation at a delay of
/// `i − max_lag` samples (see the module docs for the sign), normalised so that two copies of
/// one signal give 1 at their delay.
///
/// `reference` holds `n` samples; `cti` holds `n + 2·max_lag` samples and starts `max_lag`
/// samples before the reference on the shared grid. Returns `None` when either side is
/// silent in the band (nothing to correlate).
///
/// # Panics
/// If `cti` is not `reference.len() + 2·max_lag` long, or `rate_hz` is not positive.
#[must_use]
pub fn gcc_phat(
    reference: &[f32],
    cti: &[f32],
    max_lag: usize,
    rate_hz: f64,
    band: Band,
) -> Option<Vec<f32>> {
    assert_eq!(
        cti.len(),
        reference.len() + 2 * max_lag,
        "the CTI window spans the reference window and max_lag either side"
    );
    assert!(rate_hz > 0.0, "the rate must be positive");
    // Correlation index m = max_lag + delay ∈ [0, 2·max_lag] needs j + m < n + 2·max_lag for
    // every reference sample j: a transform as long as the CTI window never wraps.
    let len = cti.len().next_power_of_two();
    let mut planner = FftPlanner::<f32>::new();
    let forward = planner.plan_fft_forward(len);
    let inverse = planner.plan_fft_inverse(len);

    let mut c = padded(cti, len);
    let mut r = padded(reference, len);
    forward.process(&mut c);
    forward.process(&mut r);

    // Cross-power spectrum, whitened, inside the band.
    let bin_hz = rate_hz / len as f64;
    let mut used = 0usize;
    for (k, (ck, rk)) in c.iter_mut().zip(&r).enumerate() {
        let f = k.min(len - k) as f64 * bin_hz;
        let cross = *ck * rk.conj();
        let magnitude = cross.norm();
        *ck = if (band.low_hz..=band.high_hz).contains(&f) && magnitude > f32::MIN_POSITIVE {
            used += 1;
            cross / magnitude
        } else {
            Complex::new(0.0, 0.0)
        };
    }
    drop(r);
    if used == 0 {
        return None;
    }
    inverse.process(&mut c);
    // A pure delay puts every used bin's phasor in phase at its lag: `used` there.
    let scale = 1.0 / used as f32;
    c.truncate(2 * max_lag + 1);
    Some(c.into_iter().map(|z| z.re * scale).collect())
}

fn padded(samples: &[f32], len: usize) -> Vec<Complex<f32>> {
    let mut out = Vec::with_capacity(len);
    out.extend(samples.iter().map(|&s| Complex::new(s, 0.0)));
    out.resize(len, Complex::new(0.0, 0.0));
    out
}

/// The delay a (combined) GCC function points at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LagEstimate {
    /// How much later the CTI's content is than the reference's, seconds (sub-sample).
    pub delay_s: f64,
    /// The function's value at its peak.
    pub peak: f64,
    /// Its highest value more than [`EXCLUSION_S`] from the peak (0 if none is positive).
    pub runner_up: f64,
    /// `1 − runner_up ÷ peak`, in [0, 1].
    pub confidence: f64,
}

impl LagEstimate {
    /// Finds the peak of `gcc` (element `i` is a delay of `i − max_lag` samples at `rate_hz`),
    /// refined by a parabola through it and its neighbours, and how far it stands out.
    /// `None` for an empty function or one with no positive value.
    #[must_use]
    pub fn from_gcc(gcc: &[f32], max_lag: usize, rate_hz: f64) -> Option<Self> {
        let (at, &peak) = gcc.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
        if peak <= 0.0 {
            return None;
        }
        let fraction = if at > 0 && at + 1 < gcc.len() {
            parabolic_vertex(gcc[at - 1], peak, gcc[at + 1])
        } else {
            0.0
        };
        let exclusion = (EXCLUSION_S * rate_hz).ceil() as usize;
        let runner_up = gcc
            .iter()
            .enumerate()
            .filter(|(i, _)| i.abs_diff(at) > exclusion)
            .map(|(_, &v)| v)
            .fold(0f32, f32::max);
        let delay_samples = at as f64 + fraction - max_lag as f64;
        Some(Self {
            delay_s: delay_samples / rate_hz,
            peak: f64::from(peak),
            runner_up: f64::from(runner_up),
            confidence: (1.0 - f64::from(runner_up) / f64::from(peak)).clamp(0.0, 1.0),
        })
    }
}

/// Offset of the vertex of the parabola through `(−1, a)`, `(0, b)`, `(1, c)`, within ±½.
fn parabolic_vertex(a: f32, b: f32, c: f32) -> f64 {
    let (a, b, c) = (f64::from(a), f64::from(b), f64::from(c));
    let curvature = a - 2.0 * b + c;
    if curvature >= 0.0 {
        return 0.0; // not a maximum: flat or odd, keep the sample
    }
    (0.5 * (a - c) / curvature).clamp(-0.5, 0.5)
}

/// Sums GCC functions of several windows, lag by lag (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Combined {
    sum: Vec<f32>,
    windows: usize,
}

impl Combined {
    /// Adds one window's function (all of the same length).
    ///
    /// # Panics
    /// If `gcc` is not as long as the ones added before.
    pub fn add(&mut self, gcc: &[f32]) {
        if self.sum.is_empty() {
            self.sum = vec![0.0; gcc.len()];
        }
        assert_eq!(
            self.sum.len(),
            gcc.len(),
            "windows searched over the same lags"
        );
        for (s, g) in self.sum.iter_mut().zip(gcc) {
            *s += g;
        }
        self.windows += 1;
    }

    /// Windows added.
    #[must_use]
    pub fn windows(&self) -> usize {
        self.windows
    }

    /// The mean function so far (empty before any window).
    #[must_use]
    pub fn mean(&self) -> Vec<f32> {
        let n = self.windows.max(1) as f32;
        self.sum.iter().map(|s| s / n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::resample::Resampler;

    const RATE: f64 = 8000.0;

    /// Deterministic white noise in [−peak, peak).
    fn noise(len: usize, seed: u64, peak: f32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let unit =
                    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
                (unit * 2.0 - 1.0) * peak
            })
            .collect()
    }

    /// `signal` read at positions `i − delay` (samples, fractional): the same content,
    /// `delay` samples later, band-limited by the crate's windowed-sinc interpolator.
    fn delayed(signal: &[f32], delay: f64) -> Vec<f32> {
        let mut r = Resampler::new(1, -delay, 1.0);
        r.push(signal);
        r.finish();
        let mut out = Vec::new();
        while out.len() < signal.len() {
            let left = signal.len() - out.len();
            assert!(r.produce(&mut out, left) > 0);
        }
        out.into_iter().map(|s| f32::from(s) / 32768.0).collect()
    }

    fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }

    /// One window: `talk` is heard by the reference at [start, start + n) and, `delay`
    /// samples later, by the CTI, each with its own noise at `noise_peak`.
    fn window(
        talk: &[f32],
        delay: f64,
        start: usize,
        n: usize,
        max_lag: usize,
        noise_peak: f32,
        seed: u64,
    ) -> Option<Vec<f32>> {
        let late = delayed(talk, delay);
        let reference = add(&talk[start..start + n], &noise(n, seed, noise_peak));
        let cti_len = n + 2 * max_lag;
        let cti = add(
            &late[start - max_lag..start - max_lag + cti_len],
            &noise(cti_len, seed + 1, noise_peak),
        );
        gcc_phat(&reference, &cti, max_lag, RATE, Band::SPEECH)
    }

    #[test]
    fn a_known_delay_is_found_within_a_millisecond_through_noise() {
        // 4 s windows, ±1.5 s search, the same talk 0.7305 s late at 0 dB SNR.
        let talk = noise(80_000, 1, 0.3);
        let delay = 0.730_5 * RATE; // 5844 samples: a fractional one
        let gcc = window(&talk, delay, 20_000, 32_000, 12_000, 0.3, 10).unwrap();
        let found = LagEstimate::from_gcc(&gcc, 12_000, RATE).unwrap();
        let error_ms = (found.delay_s - 0.730_5) * 1000.0;
        assert!(error_ms.abs() < 0.05, "error {error_ms} ms, {found:?}");
        assert!(found.confidence > 0.8, "{found:?}");
    }

    #[test]
    fn a_negative_delay_means_the_cti_content_comes_earlier() {
        let talk = noise(120_000, 2, 0.3);
        let gcc = window(&talk, -2.4 * RATE, 30_000, 32_000, 24_000, 0.1, 20).unwrap();
        let found = LagEstimate::from_gcc(&gcc, 24_000, RATE).unwrap();
        assert!((found.delay_s + 2.4).abs() < 0.001, "{found:?}");
        // And the other way round for the same content: late is positive.
        let gcc = window(&talk, 2.4 * RATE, 30_000, 32_000, 24_000, 0.1, 20).unwrap();
        let found = LagEstimate::from_gcc(&gcc, 24_000, RATE).unwrap();
        assert!((found.delay_s - 2.4).abs() < 0.001, "{found:?}");
    }

    #[test]
    fn a_gain_and_colouring_do_not_matter() {
        // The reference quieter by 26 dB and through a (zero-phase) low-pass that takes it
        // down 16 dB at 3.6 kHz: PHAT whitens both.
        let talk = noise(60_000, 3, 0.3);
        let late = delayed(&talk, 123.25);
        let reference: Vec<f32> = talk[9_999..42_001]
            .windows(3)
            .map(|w| 0.05 * (0.25 * w[0] + 0.5 * w[1] + 0.25 * w[2]))
            .collect();
        let gcc = gcc_phat(&reference, &late[2000..50_000], 8000, RATE, Band::SPEECH).unwrap();
        let found = LagEstimate::from_gcc(&gcc, 8000, RATE).unwrap();
        assert!((found.delay_s * RATE - 123.25).abs() < 0.1, "{found:?}");
        assert!(found.confidence > 0.8, "{found:?}");
    }

    #[test]
    fn unrelated_signals_give_a_low_confidence() {
        for seed in [5, 6, 7] {
            let reference = noise(32_000, seed, 0.3);
            let cti = noise(32_000 + 24_000, seed + 100, 0.3);
            let gcc = gcc_phat(&reference, &cti, 12_000, RATE, Band::SPEECH).unwrap();
            let found = LagEstimate::from_gcc(&gcc, 12_000, RATE).unwrap();
            assert!(found.confidence < 0.3, "seed {seed}: {found:?}");
        }
    }

    #[test]
    fn weak_windows_add_up_where_one_alone_is_unsure() {
        // The talk 10 dB under each side's noise: one 2 s window is a coin toss, the sum of
        // eight stands out at the right delay.
        let talk = noise(200_000, 4, 0.1);
        let (n, max_lag, delay) = (16_000, 8000, 1234.5);
        let mut combined = Combined::default();
        let mut alone = Vec::new();
        for w in 0..8 {
            let gcc = window(
                &talk,
                delay,
                10_000 + w * 22_000,
                n,
                max_lag,
                0.3,
                100 + w as u64,
            )
            .unwrap();
            alone.push(
                LagEstimate::from_gcc(&gcc, max_lag, RATE)
                    .unwrap()
                    .confidence,
            );
            combined.add(&gcc);
        }
        assert_eq!(combined.windows(), 8);
        let found = LagEstimate::from_gcc(&combined.mean(), max_lag, RATE).unwrap();
        assert!((found.delay_s * RATE - delay).abs() < 0.2, "{found:?}");
        let best_alone = alone.iter().copied().fold(0.0, f64::max);
        assert!(
            found.confidence > best_alone && found.confidence > 0.5,
            "combined {found:?}, windows alone {alone:?}"
        );
    }

    #[test]
    fn silence_gives_nothing_to_correlate() {
        let silent = vec![0f32; 1000];
        let cti = noise(1200, 1, 0.3);
        assert_eq!(gcc_phat(&silent, &cti, 100, RATE, Band::SPEECH), None);
        assert_eq!(LagEstimate::from_gcc(&[], 0, RATE), None);
        assert_eq!(LagEstimate::from_gcc(&[-1.0, -0.5], 1, RATE), None);
    }

    #[test]
    fn the_parabola_finds_the_vertex_between_samples() {
        // y = 1 − (x − 0.3)² sampled at −1, 0, 1.
        let y = |x: f64| (1.0 - (x - 0.3) * (x - 0.3)) as f32;
        assert!((parabolic_vertex(y(-1.0), y(0.0), y(1.0)) - 0.3).abs() < 1e-6);
        assert_eq!(parabolic_vertex(1.0, 1.0, 1.0), 0.0);
    }
}
