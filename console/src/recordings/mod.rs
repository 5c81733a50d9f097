//! Sealed recordings for compliance officers: finding them ([`search`]), opening one for a
//! stated reason ([`access`]: every view, play, verification and export is audited with it),
//! reading its bytes for the browser's player, decrypted on the fly ([`media`]), and its
//! manifest put in words ([`manifest_view`]) and drawn as a timeline ([`timeline`]).

pub mod access;
pub mod manifest_view;
pub mod media;
pub mod retention;
pub mod search;
pub mod timeline;
