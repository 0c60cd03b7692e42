//! Faults: crashes, throttling, bad input, races.
