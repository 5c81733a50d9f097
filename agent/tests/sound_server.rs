//! The microphone reference from a real sound server: a private PulseAudio daemon with a null
//! sink, a 1 kHz tone played into it, and the agent capturing the sink's monitor through
//! `pulse:DEVICE` (`pulsesrc`), then through `alsa:pulse` (ALSA's PulseAudio plugin, whose
//! pipeline sometimes hangs when stopped). The stored Opus packets decode to the tone. This
//! machine has no sound card; this is as near one as it gets.
//!
//! The daemon is found through `PULSE_SERVER`. Setting a variable in a running test is unsafe
//! (other threads may read the environment), so the test starts the daemon and runs itself
//! again as a child process with the variable set; the child records.

mod common;

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::link::Ended;
use agent::{CustomerAction, MicSource, VideoSource};
use common::{Server, assert_complete};
use gstreamer as gst;
use gstreamer::prelude::*;
use proto::Track;
use tokio::sync::mpsc;

const SINK: &str = "idv_test";
const TONE_HZ: f64 = 1000.0;

/// A PulseAudio daemon of this test's own, stopped when dropped.
struct Pulse {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pulse {
    /// `None` (and the test says it skipped) where PulseAudio is not installed.
    fn start() -> Option<Self> {
        if Command::new("pulseaudio")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: pulseaudio is not installed (scripts/bootstrap.sh installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("native");
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
            ])
            .arg(format!(
                "--load=module-native-protocol-unix socket={} auth-anonymous=1",
                socket.display()
            ))
            .arg(format!("--load=module-null-sink sink_name={SINK}"))
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "PulseAudio did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            socket,
            _dir: dir,
        })
    }

    fn server(&self) -> String {
        format!("unix:{}", self.socket.display())
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plays the tone into the null sink until dropped.
fn play_tone() -> gst::Pipeline {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc freq={TONE_HZ} volume=0.5 is-live=true ! pulsesink device={SINK}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline
}

/// Power of `pcm` (at `rate` Hz) at `hz` (Goertzel).
fn power_at(pcm: &[i16], rate: f64, hz: f64) -> f64 {
    let coefficient = 2.0 * (2.0 * std::f64::consts::PI * hz / rate).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in pcm {
        let s = f64::from(x) + coefficient * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coefficient * s1 * s2
}

/// Set in the child that records.
const CHILD: &str = "IDV_SOUND_SERVER_CHILD";
const NAME: &str = "the_microphone_reference_records_a_real_sound_server";

#[test]
fn the_microphone_reference_records_a_real_sound_server() {
    if std::env::var_os(CHILD).is_some() {
        record_in_this_process();
        return;
    }
    let Some(pulse) = Pulse::start() else {
        return;
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("PULSE_SERVER", pulse.server())
        .env("PULSE_SOURCE", format!("{SINK}.monitor"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A sound stack that hangs must fail the test, not the whole run.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the recording did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let child = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr),
    );
    println!("{stdout}");
    assert!(child.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("SOUND pulse:") && stdout.contains("SOUND alsa:pulse:"),
        "the child recorded: {stdout}"
    );
}

fn record_in_this_process() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = Server::start().await;
        let tone = play_tone();
        record_the_tone(
            &server,
            MicSource::Pulse(Some(format!("{SINK}.monitor"))),
            1.0,
        )
        .await;
        // ALSA's PulseAudio plugin stamps a little less evenly, and stopping its pipeline
        // hangs in the plugin now and then (`gst_audio_ring_buffer_release` waiting on a
        // thread in `pa_threaded_mainloop_wait`; 4 of 30 runs here). The agent abandons such a
        // pipeline after `STOP_PATIENCE` and still ends the session with everything stored.
        let started = Instant::now();
        record_the_tone(&server, MicSource::Alsa(Some("pulse".into())), 10.0).await;
        let took = started.elapsed();
        println!("alsa:pulse recorded and stopped in {took:?}");
        assert!(took < Duration::from_secs(15), "{took:?}");
        tone.set_state(gst::State::Null).unwrap();
    });
}

/// Records the tone from `source` and checks it, with the packets' stamps at most
/// `off_grid_limit_ms` off a 20 ms grid once the stream runs.
async fn record_the_tone(server: &Server, source: MicSource, off_grid_limit_ms: f64) {
    let (session, code) = server.create().await;
    let mut config = server.agent_config(&server.server.url(), &code, VideoSource::None);
    config.mic_reference = source.clone();
    let (actions, actions_rx) = mpsc::channel(4);
    let running = tokio::spawn(agent::run(config, actions_rx));
    // PulseAudio takes up to 1.5 s to start a recording stream.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    actions.send(CustomerAction::End).await.unwrap();
    let outcome = running.await.unwrap().unwrap();
    assert_eq!(outcome.ended, Ended::Finished, "{source}");

    server.wait_rolled(session).await;
    let stored = server.stored(session).await;
    let track = Track::MicReference;
    let packets = &stored[&track];
    assert_complete(packets, outcome.sealed.get(track), track);
    assert!(packets.len() > 60, "{source}: {} packets", packets.len());
    let mut decoder = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    let mut buffer = vec![0i16; 1920];
    for (_, packet) in packets {
        let n = decoder.decode(packet, &mut buffer, false).unwrap();
        pcm.extend_from_slice(&buffer[..n]);
    }
    // The last second: past the encoder's start and the sound server's first buffers.
    let last_second = &pcm[pcm.len() - 16_000..];
    let tone = power_at(last_second, 16_000.0, TONE_HZ);
    let elsewhere = [600.0, 1700.0, 2500.0].map(|hz| power_at(last_second, 16_000.0, hz));
    let peak = last_second
        .iter()
        .map(|&s| i32::from(s).abs())
        .max()
        .unwrap();
    // Once the stream runs (the last second; PulseAudio may leave a hole of a few hundred ms
    // after a stream's first packet, stamped as such), the packets are stamped on the agent
    // clock exactly one packet apart. Before the pipeline ran on the system clock, they lay
    // 111–217 ms off the grid within that second.
    let steady = &packets[packets.len() - 50..];
    let steps_ms: Vec<f64> = steady
        .windows(2)
        .map(|w| (w[1].0.captured_at_ns - w[0].0.captured_at_ns) as f64 / 1e6)
        .collect();
    let within = steps_ms.iter().filter(|s| (*s - 20.0).abs() <= 1.0).count();
    let span = steady.last().unwrap().0.captured_at_ns - steady[0].0.captured_at_ns;
    let mean_ms = span as f64 / 1e6 / steps_ms.len() as f64;
    // How far any packet lies from a regular 20 ms grid through the first (ms).
    let off_grid_ms = steady
        .iter()
        .enumerate()
        .map(|(i, (header, _))| {
            let grid = steady[0].0.captured_at_ns + i as i64 * 20_000_000;
            (header.captured_at_ns - grid).abs() as f64 / 1e6
        })
        .fold(0.0, f64::max);
    println!(
        "SOUND {source}: {} packets; the last second's {mean_ms:.4} ms apart on average, \
         {within} of {} steps within 20 ± 1 ms, at most {off_grid_ms:.1} ms off a 20 ms grid, peak {peak}, 1 kHz \
         {:.0}× the strongest other tone",
        packets.len(),
        steps_ms.len(),
        tone / elsewhere.iter().copied().fold(f64::MIN, f64::max)
    );
    assert!(
        off_grid_ms < off_grid_limit_ms,
        "{source}: packets {mean_ms} ms apart, up to {off_grid_ms} ms off a 20 ms grid: \
         {steps_ms:?}"
    );
    assert!(
        peak > 2000,
        "{source}: the tone is loud enough (peak {peak})"
    );
    for (hz, power) in [600.0, 1700.0, 2500.0].iter().zip(elsewhere) {
        assert!(
            tone > 100.0 * power,
            "{source}: 1 kHz ({tone:.3e}) stands out over {hz} Hz ({power:.3e})"
        );
    }
}
