//! Work that runs beside serving: garbage collection and `--mode verify`.

pub mod gc;
pub mod integrate;
pub mod publish;
pub mod verify;
