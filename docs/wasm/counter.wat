;; counter: every action adds one to the key "count" of its action's namespace, kept as
;; decimal text. The smallest useful swarmvm module: it reads and writes state and ignores
;; its input. ABI: docs/wasm.md.
(module
  (import "swarmvm" "get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "swarmvm" "set" (func $set (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  ;; 0..5: the key; 64..84: the value read; 128..148: digits written backwards.
  (data (i32.const 0) "count")

  ;; The decimal text at ptr (len bytes) as a number; 0 when empty.
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

  ;; Writes v as decimal text at ptr; returns its length.
  (func $format (param $v i64) (param $ptr i32) (result i32)
    (local $p i32) (local $len i32)
    (local.set $p (i32.const 148))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    (local.set $len (i32.sub (i32.const 148) (local.get $p)))
    (call $copy (local.get $ptr) (local.get $p) (local.get $len))
    (local.get $len))

  (func $copy (param $dst i32) (param $src i32) (param $len i32)
    (block $done
      (loop $byte
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store8 (local.get $dst) (i32.load8_u (local.get $src)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 1)))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $byte))))

  (func (export "run") (result i32)
    (local $len i32)
    (local.set $len (call $get (i32.const 0) (i32.const 5) (i32.const 64) (i32.const 20)))
    (if (i32.lt_s (local.get $len) (i32.const 0)) (then (local.set $len (i32.const 0))))
    (call $set (i32.const 0) (i32.const 5) (i32.const 64)
      (call $format
        (i64.add (call $parse (i32.const 64) (local.get $len)) (i64.const 1))
        (i32.const 64)))
    (i32.const 0)))
