pub mod canonicalize;
pub mod hash;
pub mod schema;
pub mod validate;
pub mod verify_note;
