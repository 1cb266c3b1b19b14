//! PowerJob simulator (being written).
