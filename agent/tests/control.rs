//! Remote control under Xvfb, through XTest: the operator's moves are injected while the
//! customer is idle; the customer's own move takes control back (the time from the move to the
//! change is printed over 20 takeovers — a measurement, not a pass mark: timings are for
//! benches) and the operator's moves are dropped until the customer has been idle for the
//! hold time.

mod common;
#[path = "common/xvfb.rs"]
mod xvfb;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use agent::control::{Controller, Injector, POLL, X11Injector};
use proto::{ControlHolder, InputEvent};

#[test]
fn the_customer_takes_control_back_at_once() {
    let Some(display) = xvfb::Xvfb::start(800, 600) else {
        return;
    };
    let hold = Duration::from_millis(300);
    let mut control =
        Controller::with_hold(X11Injector::connect(Some(&display.name)).unwrap(), hold);
    // The customer: another client on the same display.
    let mut customer = X11Injector::connect(Some(&display.name)).unwrap();
    let (moved_tx, moved_rx) = mpsc::channel::<Instant>();
    let mut latencies = Vec::new();

    for round in 0..20u16 {
        // The operator has control: their moves land.
        let mut operator_x = 100;
        let started = Instant::now();
        while control.holder() != ControlHolder::Operator
            || started.elapsed() < Duration::from_millis(100)
        {
            control
                .operator(&[InputEvent::PointerMove {
                    x: operator_x,
                    y: 100,
                }])
                .unwrap();
            std::thread::sleep(POLL);
            operator_x = 100 + (operator_x + 1) % 50;
            assert!(
                started.elapsed() < hold * 3,
                "the operator never got control"
            );
        }
        let (x, _) = control_pointer(&mut customer);
        assert!(
            (100..150).contains(&x),
            "round {round}: the operator's move landed ({x})"
        );

        // The customer moves: from another thread, at a time the controller does not know.
        let target = (600 + round, 400);
        let sender = moved_tx.clone();
        let display_name = display.name.clone();
        let mover = std::thread::spawn(move || {
            let mut hand = X11Injector::connect(Some(&display_name)).unwrap();
            std::thread::sleep(Duration::from_millis(13));
            hand.inject(&InputEvent::PointerMove {
                x: target.0,
                y: target.1,
            })
            .unwrap();
            sender.send(Instant::now()).unwrap();
        });
        let waiting = Instant::now();
        let change = loop {
            assert!(
                waiting.elapsed() < Duration::from_secs(10),
                "round {round}: the customer's move was never seen"
            );
            // The operator keeps trying to move meanwhile.
            if let Some(change) = control
                .operator(&[InputEvent::PointerMove { x: 120, y: 100 }])
                .unwrap()
            {
                break change;
            }
            std::thread::sleep(POLL);
        };
        mover.join().unwrap();
        let moved = moved_rx.recv().unwrap();
        assert_eq!(change.holder, ControlHolder::Customer);
        latencies.push(change.at.saturating_duration_since(moved));
        // The operator's moves are dropped: the pointer stays where the customer put it.
        for _ in 0..10 {
            control
                .operator(&[InputEvent::PointerMove { x: 120, y: 100 }])
                .unwrap();
            std::thread::sleep(POLL);
        }
        assert_eq!(
            control_pointer(&mut customer),
            (i16::try_from(target.0).unwrap(), 400)
        );
    }
    latencies.sort();
    let worst = *latencies.last().unwrap();
    let p95 = latencies[latencies.len() * 95 / 100 - 1];
    eprintln!(
        "customer input → operator suppressed and notified: p95 {p95:?}, worst {worst:?} over {} takeovers",
        latencies.len()
    );
    assert!(control.suppressed() > 0);
}

fn control_pointer(display: &mut X11Injector) -> (i16, i16) {
    display.state().unwrap().pointer
}

/// Through the real server: an operator watching live sends input, the agent injects it; the
/// customer moves the mouse and the operator is told (the time it took is printed); an
/// operator asking to lift a blind is refused by the agent, and both are audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_sees_the_customer_take_control_back() {
    use agent::{CustomerAction, VideoSource};
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let Some(display) = xvfb::Xvfb::start(640, 480) else {
        return;
    };
    let server = common::Server::start().await;
    let (session, code) = server.create().await;
    let screen = VideoSource::X11(Some(display.name.clone()));
    let mut config = server.agent_config(&server.server.url(), &code, screen);
    config.camera.source = VideoSource::None;
    let (actions, actions_rx) = tokio::sync::mpsc::channel(4);
    let running = tokio::spawn(agent::run(config, actions_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut live = server.watch(session).await;

    // The operator moves the customer's pointer.
    let input = proto::OperatorRequest::Input {
        events: vec![InputEvent::PointerMove { x: 200, y: 150 }],
    };
    live.send(Message::text(input.to_json())).await.unwrap();
    let mut observer = X11Injector::connect(Some(&display.name)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while observer.state().unwrap().pointer != (200, 150) {
        assert!(
            Instant::now() < deadline,
            "the operator's input was not injected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The customer moves it: the operator is told.
    let moved = Instant::now();
    observer
        .inject(&InputEvent::PointerMove { x: 500, y: 400 })
        .unwrap();
    let notice = tokio::time::timeout(
        Duration::from_secs(5),
        common::next_notice(&mut live, "control"),
    )
    .await
    .expect("the operator is told");
    let latency = moved.elapsed();
    assert_eq!(notice["holder"], "customer", "{notice}");
    eprintln!("customer input → operator notified over the server: {latency:?}");
    // And the operator's input no longer lands.
    live.send(Message::text(input.to_json())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(observer.state().unwrap().pointer, (500, 400));

    // Lifting a blind is refused by the agent.
    let lift = proto::OperatorRequest::LiftBlinds;
    live.send(Message::text(lift.to_json())).await.unwrap();
    let refused = common::next_notice(&mut live, "refused").await;
    assert_eq!(refused["request"], "lift blinds", "{refused}");

    actions.send(CustomerAction::End).await.unwrap();
    running.await.unwrap().unwrap();
    let log = server.vault.audit().entries(0, 1000).await.unwrap();
    for action in [
        "session.control.input",
        "session.blinds.lift_request",
        "session.blinds.lift",
    ] {
        assert!(log.iter().any(|e| e.action == action), "{action} audited");
    }
    assert!(
        log.iter()
            .any(|e| e.action == "session.control" && e.actor == "customer:agent")
    );
}
