pub mod canonicalize;
pub mod hash;
pub mod ingest;
pub mod prove;
pub mod schema;
pub mod validate;
pub mod verify;
pub mod verify_note;
