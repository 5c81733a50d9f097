//! The few things every GStreamer pipeline of ours does the same way: make elements with a
//! clear error when a plugin is missing, turn bus errors into [`MuxError::Pipeline`], pull
//! from an appsink without hanging when upstream failed, and stop (EOS first, then `Null`).

use std::sync::Once;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::error::{MuxError, Result};

/// Initialises GStreamer once per process.
///
/// # Errors
/// [`MuxError::Pipeline`] when GStreamer cannot start (no registry, broken install).
pub fn init() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = gst::init().map_err(|e| MuxError::Pipeline {
            stage: "starting GStreamer".into(),
            element: "gst_init".into(),
            message: e.to_string(),
        });
    });
    result
}

/// A new element of `factory`.
///
/// # Errors
/// [`MuxError::MissingElement`] when the plugin is not installed.
pub fn element(factory: &str) -> Result<gst::Element> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| MuxError::MissingElement(factory.to_owned()))
}

/// A pipeline with its purpose, for error messages.
pub struct Pipeline {
    /// The GStreamer pipeline.
    pub inner: gst::Pipeline,
    stage: String,
}

impl Pipeline {
    /// An empty pipeline doing `stage` ("demuxing the camera file", …).
    #[must_use]
    pub fn new(stage: impl Into<String>) -> Self {
        Self {
            inner: gst::Pipeline::new(),
            stage: stage.into(),
        }
    }

    /// Adds `elements` and links them in order.
    ///
    /// # Errors
    /// [`MuxError::Pipeline`] when two neighbours cannot be linked (no common caps).
    pub fn chain(&self, elements: &[&gst::Element]) -> Result<()> {
        self.inner
            .add_many(elements.iter().copied())
            .map_err(|e| self.error("add", e))?;
        gst::Element::link_many(elements.iter().copied()).map_err(|e| self.error("link", e))
    }

    /// An error of this pipeline at `element`.
    pub fn error(&self, element: impl Into<String>, message: impl ToString) -> MuxError {
        MuxError::Pipeline {
            stage: self.stage.clone(),
            element: element.into(),
            message: message.to_string(),
        }
    }

    /// Sets the pipeline playing.
    ///
    /// # Errors
    /// The first bus error when a state change fails.
    pub fn play(&self) -> Result<()> {
        if self.inner.set_state(gst::State::Playing).is_err() {
            self.check_bus()?;
            return Err(self.error("pipeline", "could not start"));
        }
        Ok(())
    }

    /// The first error posted on the bus, if any (non-blocking).
    ///
    /// # Errors
    /// That error, as [`MuxError::Pipeline`].
    pub fn check_bus(&self) -> Result<()> {
        let Some(bus) = self.inner.bus() else {
            return Ok(());
        };
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(err) = msg.view() {
                return Err(self.bus_error(err));
            }
        }
        Ok(())
    }

    fn bus_error(&self, err: &gst::message::Error) -> MuxError {
        let element = err
            .src()
            .map_or_else(|| "pipeline".into(), |s| s.name().to_string());
        let mut message = err.error().to_string();
        if let Some(debug) = err.debug() {
            // The first line of GStreamer's debug text usually names the real cause.
            if let Some(line) = debug.lines().last().filter(|l| !l.is_empty()) {
                message = format!("{message} ({})", line.trim());
            }
        }
        self.error(element, message)
    }

    /// The next sample from `sink`, `None` at end of stream; never hangs on an upstream
    /// failure (the bus is checked between short waits).
    ///
    /// # Errors
    /// The first bus error.
    pub fn pull(&self, sink: &gst_app::AppSink) -> Result<Option<gst::Sample>> {
        loop {
            if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
                return Ok(Some(sample));
            }
            if sink.is_eos() {
                return Ok(None);
            }
            self.check_bus()?;
        }
    }

    /// Stops the pipeline: `Null` releases every resource (files, threads).
    pub fn stop(&self) {
        let _ = self.inner.set_state(gst::State::Null);
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}
