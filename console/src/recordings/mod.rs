//! Sealed recordings for compliance officers: finding them ([`search`]), opening one for a
//! stated reason ([`access`]: every view, play, verification and export is audited with it),
//! reading its bytes for the browser's player, decrypted on the fly ([`media`]), and its
//! manifest put in words ([`manifest_view`]) and drawn as a timeline ([`timeline`]), and
//! exporting it as a decrypted MP4 with a watermark of who exported it ([`export`],
//! [`watermark`]).

pub mod access;
pub mod export;
pub mod manifest_view;
pub mod media;
pub mod retention;
pub mod search;
pub mod timeline;
pub mod watermark;
