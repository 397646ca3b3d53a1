//! Fuel: what a WebAssembly operation may spend on one action. Registration tokens carry the
//! number (at most [`MAX_FUEL`]; [`DEFAULT_FUEL`] when `OPS.json` gives none), so every peer
//! meters an action the same way.

/// Fuel written into a token when `OPS.json` names none: about a tenth of a second of
/// interpretation on a 2 GHz core.
pub const DEFAULT_FUEL: u64 = 10_000_000;
/// The most fuel a registration may give one action.
pub const MAX_FUEL: u64 = 1_000_000_000;
