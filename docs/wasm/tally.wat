;; tally: one vote per wallet per proposal, like the design note's vote_proposal, as a
;; module. Its input is the note's action,
;;   {"action": NAME, "proposal": {"description": "...", "id": "P001"}}
;; which arrives as canonical JSON (members sorted, no spaces), so it is read strictly:
;;   {"action":"NAME","proposal":{["description":"...",]"id":"ID"}}
;; In its action's namespace it keeps ID -> the number of votes (decimal text) and
;; ID/WALLET -> "" for each wallet that voted. ABI: docs/wasm.md.
(module
  (import "swarmvm" "input_len" (func $input_len (result i32)))
  (import "swarmvm" "input_read" (func $input_read (param i32)))
  (import "swarmvm" "caller" (func $caller (param i32)))
  (import "swarmvm" "get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "swarmvm" "set" (func $set (param i32 i32 i32 i32)))
  (import "swarmvm" "fail" (func $fail (param i32 i32)))
  (memory (export "memory") 1)

  ;; Memory: 0..256 literals and messages; 256..512 the key (ID "/" WALLET); 512..540 the
  ;; count's text; 600..620 digits written backwards; 1024.. the input (at most 32 KiB: a
  ;; vote is far smaller). One page, so the runtime's reset between actions copies little.
  (global $in i32 (i32.const 1024))
  (global $n (mut i32) (i32.const 0))
  (data (i32.const 0) "{\"action\":\"")          ;; 0, 11
  (data (i32.const 16) ",\"proposal\":{")        ;; 16, 13
  (data (i32.const 32) "\"description\":\"")     ;; 32, 15
  (data (i32.const 48) "\"id\":\"")              ;; 48, 6
  (data (i32.const 56) "}}")                     ;; 56, 2
  (data (i32.const 64) "tally: expected {\"action\": ..., \"proposal\": {\"id\": ...}}") ;; 64, 56
  (data (i32.const 128) "tally: this wallet already voted on this proposal") ;; 128, 49

  (func $shape (call $fail (i32.const 64) (i32.const 56)))

  ;; True when the input at pos starts with the len bytes at lit, for 2 <= len <= 16: two
  ;; loads from each, 8, 4 or 2 bytes wide, one at the start and one ending at the end (they
  ;; overlap when len is not twice the width), rather than a loop over bytes.
  (func $at (param $pos i32) (param $lit i32) (param $len i32) (result i32)
    (local $in i32) (local $in_end i32) (local $lit_end i32)
    (if (i32.gt_u (i32.add (local.get $pos) (local.get $len)) (global.get $n))
      (then (return (i32.const 0))))
    (local.set $in (i32.add (global.get $in) (local.get $pos)))
    (local.set $in_end (i32.add (local.get $in) (local.get $len)))
    (local.set $lit_end (i32.add (local.get $lit) (local.get $len)))
    (if (i32.ge_u (local.get $len) (i32.const 8))
      (then
        (return
          (i32.and
            (i64.eq (i64.load (local.get $in)) (i64.load (local.get $lit)))
            (i64.eq (i64.load offset=0 (i32.sub (local.get $in_end) (i32.const 8)))
                    (i64.load offset=0 (i32.sub (local.get $lit_end) (i32.const 8))))))))
    (if (i32.ge_u (local.get $len) (i32.const 4))
      (then
        (return
          (i32.and
            (i32.eq (i32.load (local.get $in)) (i32.load (local.get $lit)))
            (i32.eq (i32.load (i32.sub (local.get $in_end) (i32.const 4)))
                    (i32.load (i32.sub (local.get $lit_end) (i32.const 4))))))))
    (i32.and
      (i32.eq (i32.load16_u (local.get $in)) (i32.load16_u (local.get $lit)))
      (i32.eq (i32.load16_u (i32.sub (local.get $in_end) (i32.const 2)))
              (i32.load16_u (i32.sub (local.get $lit_end) (i32.const 2))))))

  ;; Copies len bytes from src to dst eight at a time: it may write up to 7 bytes past
  ;; dst + len (every caller has that room, and writes what follows afterwards).
  (func $copy (param $dst i32) (param $src i32) (param $len i32)
    (block $done
      (loop $word
        (br_if $done (i32.le_s (local.get $len) (i32.const 0)))
        (i64.store (local.get $dst) (i64.load (local.get $src)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 8)))
        (local.set $src (i32.add (local.get $src) (i32.const 8)))
        (local.set $len (i32.sub (local.get $len) (i32.const 8)))
        (br $word))))

  (func $parse (param $ptr i32) (param $len i32) (result i64)
    (local $v i64) (local $end i32)
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (block $done
      (loop $digits
        (br_if $done (i32.ge_u (local.get $ptr) (local.get $end)))
        (local.set $v
          (i64.add
            (i64.mul (local.get $v) (i64.const 10))
            (i64.extend_i32_u (i32.sub (i32.load8_u (local.get $ptr)) (i32.const 48)))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 1)))
        (br $digits)))
    (local.get $v))

  (func $format (param $v i64) (param $ptr i32) (result i32)
    (local $p i32) (local $len i32)
    (local.set $p (i32.const 620))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    (local.set $len (i32.sub (i32.const 620) (local.get $p)))
    (call $copy (local.get $ptr) (local.get $p) (local.get $len))
    (local.get $len))

  (func (export "run") (result i32)
    (local $p i32) (local $c i32) (local $id i32) (local $id_len i32) (local $len i32)
    (local $w i64) (local $q i64)
    (global.set $n (call $input_len))
    (if (i32.gt_u (global.get $n) (i32.const 32768)) (then (call $shape)))
    (call $input_read (global.get $in))
    ;; {"action":"NAME",
    (if (i32.eqz (call $at (i32.const 0) (i32.const 0) (i32.const 11))) (then (call $shape)))
    (local.set $p (i32.const 11))
    (block $name_end
      (loop $name
        (if (i32.ge_u (local.get $p) (global.get $n)) (then (call $shape)))
        (br_if $name_end (i32.eq (i32.load8_u offset=1024 (local.get $p)) (i32.const 34)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $name)))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    ;; "proposal":{
    (if (i32.eqz (call $at (local.get $p) (i32.const 16) (i32.const 13))) (then (call $shape)))
    (local.set $p (i32.add (local.get $p) (i32.const 13)))
    ;; an optional "description":"...", skipped (escapes are a backslash and one more byte,
    ;; or more for \u, which never holds a quote)
    (if (call $at (local.get $p) (i32.const 32) (i32.const 15))
      (then
        (local.set $p (i32.add (local.get $p) (i32.const 15)))
        (block $text_end
          (loop $text
            ;; Eight bytes at a time while none of them is a quote or a backslash: x has a
            ;; zero byte exactly when (x - 0x0101..) & ~x & 0x8080.. is not zero, and
            ;; w ^ 0x2222.. has one where w has a quote.
            (if (i32.le_u (i32.add (local.get $p) (i32.const 8)) (global.get $n))
              (then
                (local.set $w (i64.load offset=1024 (local.get $p)))
                (local.set $q (i64.xor (local.get $w) (i64.const 0x2222222222222222)))
                (local.set $w (i64.xor (local.get $w) (i64.const 0x5c5c5c5c5c5c5c5c)))
                (if (i64.eqz
                      (i64.and
                        (i64.or
                          (i64.and (i64.sub (local.get $q) (i64.const 0x0101010101010101))
                                   (i64.xor (local.get $q) (i64.const -1)))
                          (i64.and (i64.sub (local.get $w) (i64.const 0x0101010101010101))
                                   (i64.xor (local.get $w) (i64.const -1))))
                        (i64.const 0x8080808080808080)))
                  (then
                    (local.set $p (i32.add (local.get $p) (i32.const 8)))
                    (br $text)))))
            ;; Otherwise (or near the end) one byte.
            (if (i32.ge_u (local.get $p) (global.get $n)) (then (call $shape)))
            (local.set $c (i32.load8_u offset=1024 (local.get $p)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br_if $text_end (i32.eq (local.get $c) (i32.const 34)))
            (if (i32.eq (local.get $c) (i32.const 92))
              (then (local.set $p (i32.add (local.get $p) (i32.const 1)))))
            (br $text)))
        (if (i32.ge_u (local.get $p) (global.get $n)) (then (call $shape)))
        (if (i32.ne (i32.load8_u offset=1024 (local.get $p)) (i32.const 44)) (then (call $shape)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))))
    ;; "id":"ID"}}
    (if (i32.eqz (call $at (local.get $p) (i32.const 48) (i32.const 6))) (then (call $shape)))
    (local.set $p (i32.add (local.get $p) (i32.const 6)))
    (local.set $id (local.get $p))
    (block $id_end
      (loop $id_chars
        (if (i32.ge_u (local.get $p) (global.get $n)) (then (call $shape)))
        (local.set $c (i32.load8_u offset=1024 (local.get $p)))
        (br_if $id_end (i32.eq (local.get $c) (i32.const 34)))
        ;; An id's characters: 0-9 (and ':', just after), A-Z or a-z (c | 32 in a..z), _ . -
        (if (i32.eqz
              (i32.or
                (i32.or
                  (i32.lt_u (i32.sub (local.get $c) (i32.const 48)) (i32.const 11))
                  (i32.lt_u (i32.sub (i32.or (local.get $c) (i32.const 32)) (i32.const 97))
                            (i32.const 26)))
                (i32.or
                  (i32.or (i32.eq (local.get $c) (i32.const 95)) (i32.eq (local.get $c) (i32.const 46)))
                  (i32.eq (local.get $c) (i32.const 45)))))
          (then (call $shape)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $id_chars)))
    (local.set $id_len (i32.sub (local.get $p) (local.get $id)))
    (if (i32.or (i32.eqz (local.get $id_len)) (i32.gt_u (local.get $id_len) (i32.const 64)))
      (then (call $shape)))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (if (i32.eqz (call $at (local.get $p) (i32.const 56) (i32.const 2))) (then (call $shape)))
    (if (i32.ne (i32.add (local.get $p) (i32.const 2)) (global.get $n)) (then (call $shape)))

    ;; The key ID/WALLET: one vote per wallet.
    (call $copy (i32.const 256) (i32.add (global.get $in) (local.get $id)) (local.get $id_len))
    (i32.store8 (i32.add (i32.const 256) (local.get $id_len)) (i32.const 47))
    (call $caller (i32.add (i32.const 257) (local.get $id_len)))
    (if (i32.ge_s
          (call $get (i32.const 256) (i32.add (local.get $id_len) (i32.const 44)) (i32.const 512) (i32.const 0))
          (i32.const 0))
      (then (call $fail (i32.const 128) (i32.const 49))))
    (call $set (i32.const 256) (i32.add (local.get $id_len) (i32.const 44)) (i32.const 512) (i32.const 0))
    ;; ID: the count, plus one.
    (local.set $len (call $get (i32.const 256) (local.get $id_len) (i32.const 512) (i32.const 20)))
    (if (i32.lt_s (local.get $len) (i32.const 0)) (then (local.set $len (i32.const 0))))
    (call $set (i32.const 256) (local.get $id_len) (i32.const 512)
      (call $format
        (i64.add (call $parse (i32.const 512) (local.get $len)) (i64.const 1))
        (i32.const 512)))
    (i32.const 0)))
