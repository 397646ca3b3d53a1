//! tally in Rust: the same module as `docs/wasm/tally.wat` and `docs/wasm/tally.c`. One vote
//! per wallet per proposal: in its action's namespace, ID -> the number of votes as decimal
//! text, and ID/WALLET -> "" per voter. Built as `sdk/rust/README.md` says.
#![no_std]

use swarmvm_sdk::{WALLET_ID_LEN, caller, contains, fail, get, input, input_len, set};

/// Room for the input: a vote is far smaller (one page of memory in all).
static mut INPUT: [u8; 32768] = [0; 32768];

fn shape() -> ! {
    fail(b"tally: expected {\"action\": ..., \"proposal\": {\"id\": ...}}")
}

fn id_char(c: u8) -> bool {
    matches!(c, b'0'..=b':' | b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'.' | b'-')
}

/// `lit` at `pos` of `input`, and the position after it.
fn expect(input: &[u8], pos: usize, lit: &[u8]) -> usize {
    match input.get(pos..pos + lit.len()) {
        Some(found) if found == lit => pos + lit.len(),
        _ => shape(),
    }
}

/// The proposal id of the note's vote, `{"action":"…","proposal":{["description":"…",]"id":"…"}}`,
/// read as strictly as the other two tallies read it.
fn proposal_id(input: &[u8]) -> &[u8] {
    let mut p = expect(input, 0, b"{\"action\":\"");
    while p < input.len() && input[p] != b'"' {
        p += 1; // action names hold no escapes
    }
    p = expect(input, p + 1, b",\"proposal\":{");
    if input.get(p..p + 15) == Some(b"\"description\":\"") {
        p += 15;
        loop {
            let c = *input.get(p).unwrap_or_else(|| shape());
            p += 1;
            if c == b'"' {
                break;
            }
            if c == b'\\' {
                p += 1;
            }
        }
        p = expect(input, p, b",");
    }
    p = expect(input, p, b"\"id\":\"");
    let start = p;
    while p < input.len() && input[p] != b'"' {
        if !id_char(input[p]) {
            shape();
        }
        p += 1;
    }
    if p >= input.len() || p == start || p - start > 64 {
        shape();
    }
    let id = &input[start..p];
    if expect(input, p + 1, b"}}") != input.len() {
        shape();
    }
    id
}

/// The module's one action.
#[no_mangle]
pub extern "C" fn run() -> i32 {
    // An input too long for the buffer is refused as the other two tallies refuse it.
    if input_len() > 32768 {
        shape();
    }
    // SAFETY: the module is single-threaded and `run` is its only entry, never re-entered.
    let input = input(unsafe { &mut *core::ptr::addr_of_mut!(INPUT) });
    let id = proposal_id(input);
    let mut key = [0u8; 64 + 1 + WALLET_ID_LEN];
    key[..id.len()].copy_from_slice(id);
    key[id.len()] = b'/';
    key[id.len() + 1..id.len() + 1 + WALLET_ID_LEN].copy_from_slice(&caller());
    let voter = &key[..id.len() + 1 + WALLET_ID_LEN];
    if contains(voter) {
        fail(b"tally: this wallet already voted on this proposal");
    }
    set(voter, b"");
    let mut count = [0u8; 20];
    let len = get(id, &mut count).unwrap_or(0).min(count.len());
    let mut votes: u64 = 0;
    for d in &count[..len] {
        votes = votes * 10 + u64::from(d - b'0');
    }
    votes += 1;
    let mut digits = [0u8; 20];
    let mut d = digits.len();
    loop {
        d -= 1;
        digits[d] = b'0' + (votes % 10) as u8;
        votes /= 10;
        if votes == 0 {
            break;
        }
    }
    set(id, &digits[d..]);
    0
}
