//! The swarmvm module ABI (`docs/wasm.md`) for modules written in Rust: the imports of module
//! `"swarmvm"` behind safe functions, and a panic handler, for `no_std` modules built to
//! pure WebAssembly 1.0 (see `sdk/rust/README.md` for the one `rustc` command that builds
//! one). Keys and values live in the calling action's own namespace.
#![no_std]
#![deny(missing_docs)]

mod imports {
    #[link(wasm_import_module = "swarmvm")]
    extern "C" {
        pub fn input_len() -> i32;
        pub fn input_read(ptr: *mut u8);
        pub fn caller(ptr: *mut u8);
        pub fn seq() -> i64;
        pub fn time() -> i64;
        pub fn get(kptr: *const u8, klen: i32, vptr: *mut u8, vcap: i32) -> i32;
        pub fn set(kptr: *const u8, klen: i32, vptr: *const u8, vlen: i32);
        pub fn remove(kptr: *const u8, klen: i32);
        pub fn fail(ptr: *const u8, len: i32) -> !;
    }
}

/// The length of a wallet id, as [`caller`] writes it.
pub const WALLET_ID_LEN: usize = 43;

/// The length of the action's input (its canonical JSON).
pub fn input_len() -> usize {
    // SAFETY: the import takes no arguments and returns a length.
    unsafe { imports::input_len() as usize }
}

/// Reads the action's input into the front of `buf`, and returns it; fails the contract when
/// it does not fit.
pub fn input(buf: &mut [u8]) -> &[u8] {
    let n = input_len();
    if n > buf.len() {
        fail(b"input longer than the module's buffer");
    }
    // SAFETY: `buf` has room for the `n` bytes the host writes.
    unsafe { imports::input_read(buf.as_mut_ptr()) };
    &buf[..n]
}

/// The signing wallet's id (43 ASCII bytes).
pub fn caller() -> [u8; WALLET_ID_LEN] {
    let mut id = [0u8; WALLET_ID_LEN];
    // SAFETY: the host writes exactly 43 bytes.
    unsafe { imports::caller(id.as_mut_ptr()) };
    id
}

/// The bundle's `seq` (0 under `exec`).
pub fn seq() -> u64 {
    // SAFETY: no arguments.
    unsafe { imports::seq() as u64 }
}

/// The bundle manifest's `iat` (the wall clock under `exec`).
pub fn time() -> u64 {
    // SAFETY: no arguments.
    unsafe { imports::time() as u64 }
}

/// The value at `key`: `None` when absent, else its length; its bytes are copied to the
/// front of `buf` when they fit.
pub fn get(key: &[u8], buf: &mut [u8]) -> Option<usize> {
    // SAFETY: the pointers and lengths are those of live slices; the host checks the rest.
    let n = unsafe {
        imports::get(key.as_ptr(), key.len() as i32, buf.as_mut_ptr(), buf.len() as i32)
    };
    if n < 0 { None } else { Some(n as usize) }
}

/// Whether `key` holds a value.
pub fn contains(key: &[u8]) -> bool {
    get(key, &mut []).is_some()
}

/// Sets `key` to `value`.
pub fn set(key: &[u8], value: &[u8]) {
    // SAFETY: the pointers and lengths are those of live slices.
    unsafe { imports::set(key.as_ptr(), key.len() as i32, value.as_ptr(), value.len() as i32) }
}

/// Removes `key`.
pub fn remove(key: &[u8]) {
    // SAFETY: the pointer and length are those of a live slice.
    unsafe { imports::remove(key.as_ptr(), key.len() as i32) }
}

/// Rejects the contract with `message` (UTF-8); does not return.
pub fn fail(message: &[u8]) -> ! {
    // SAFETY: the pointer and length are those of a live slice; the host does not return.
    unsafe { imports::fail(message.as_ptr(), message.len() as i32) }
}

/// A panic rejects the contract (the module traps).
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
