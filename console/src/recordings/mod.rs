//! Sealed recordings for compliance officers: finding them ([`search`]), opening one for a
//! stated reason ([`access`]: every view, play, verification and export is audited with it),
//! and reading its bytes for the browser's player, decrypted on the fly ([`media`]).

pub mod access;
pub mod media;
pub mod search;
