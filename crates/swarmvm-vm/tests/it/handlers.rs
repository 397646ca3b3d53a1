//! Each handler's success and failure paths, and the contract-level rules.

use serde_json::{Value, json};
use swarmvm_vm::{Contract, Machine, Outcome, Overlay, Record, Rejection, StateRead as _, Table};

use crate::{reject, run, vm};

fn student(id: &str) -> Value {
    json!({"action": "register_student", "student": {"id": id, "name": "John Doe", "department": "Computer Science"}})
}

fn course(id: &str) -> Value {
    json!({"action": "add_course", "course": {"id": id, "name": "Blockchain Technology", "department": "Computer Science"}})
}

fn vote(id: &str) -> Value {
    json!({"action": "vote_proposal", "proposal": {"id": id, "description": "Increase Research Funding"}})
}

fn nft(id: &str) -> Value {
    json!({"action": "generate_nft", "nft": {"id": id, "name": "RareArt",
        "metadata": {"artist": "Alice", "creation_date": "2024-11-23", "description": "A rare piece of digital art."}}})
}

#[test]
fn register_student_creates_once() {
    let mut vm = vm();
    assert_eq!(run(&mut vm, "alice", &[student("S001")]), Outcome::Applied);
    assert_eq!(
        vm.state().record(Table::Student, "S001"),
        Some(&Record::Student { name: "John Doe".into(), department: "Computer Science".into() })
    );
    let err = reject(&mut vm, "bob", &[student("S001")]);
    assert_eq!(err, "action 0 (register_student): student S001 already exists");
}

#[test]
fn register_student_validates_every_field_by_name() {
    let mut vm = vm();
    let cases = [
        (json!({"action": "register_student"}), "missing field 'student'"),
        (
            json!({"action": "register_student", "student": "S001"}),
            "field 'student' must be an object",
        ),
        (
            json!({"action": "register_student", "student": {"name": "a", "department": "b"}}),
            "missing field 'student.id'",
        ),
        (
            json!({"action": "register_student", "student": {"id": "S1", "department": "b"}}),
            "missing field 'student.name'",
        ),
        (
            json!({"action": "register_student", "student": {"id": "S1", "name": "a"}}),
            "missing field 'student.department'",
        ),
        (
            json!({"action": "register_student", "student": {"id": 7, "name": "a", "department": "b"}}),
            "field 'student.id' must be a string",
        ),
        (
            json!({"action": "register_student", "student": {"id": "S 1", "name": "a", "department": "b"}}),
            "field 'student.id' must be 1 to 64",
        ),
        (
            json!({"action": "register_student", "student": {"id": "S1", "name": "", "department": "b"}}),
            "field 'student.name' is empty",
        ),
        (
            json!({"action": "register_student", "student": {"id": "S1", "name": "x".repeat(257), "department": "b"}}),
            "field 'student.name' is longer than 256",
        ),
        (
            json!({"action": "register_student", "student": {"id": "S1", "name": "a\u{0}", "department": "b"}}),
            "field 'student.name' contains control",
        ),
        (
            json!({"action": "register_student", "student": {"id": "S1", "name": "a", "department": ["b"]}}),
            "field 'student.department' must be a string",
        ),
        (
            json!({"action": "register_student", "student": {"id": "S1", "name": "a", "department": "b", "gpa": 4}}),
            "unknown field 'student.gpa'",
        ),
        (
            json!({"action": "register_student", "student": {"id": "S1", "name": "a", "department": "b"}, "x": 1}),
            "unknown field 'x'",
        ),
    ];
    for (action, says) in cases {
        let err = reject(&mut vm, "alice", std::slice::from_ref(&action));
        assert!(err.contains(says), "{action}: {err}");
    }
}

#[test]
fn add_course_creates_once_and_validates() {
    let mut vm = vm();
    assert_eq!(run(&mut vm, "alice", &[course("C001")]), Outcome::Applied);
    assert!(reject(&mut vm, "alice", &[course("C001")]).ends_with("course C001 already exists"));
    let err = reject(
        &mut vm,
        "alice",
        &[json!({"action": "add_course", "course": {"id": "C2", "name": "n"}})],
    );
    assert!(err.ends_with("missing field 'course.department'"), "{err}");
}

#[test]
fn vote_proposal_creates_on_first_vote_and_counts_one_per_wallet() {
    let mut vm = vm();
    assert_eq!(run(&mut vm, "alice", &[vote("P001")]), Outcome::Applied);
    assert_eq!(run(&mut vm, "bob", &[vote("P001")]), Outcome::Applied);
    let err = reject(&mut vm, "alice", &[vote("P001")]);
    assert_eq!(err, "action 0 (vote_proposal): wallet alice already voted on proposal P001");
    // Two votes by one wallet inside one contract: the second sees the first's staged write.
    let err = reject(&mut vm, "carol", &[vote("P002"), vote("P002")]);
    assert!(err.starts_with("action 1 (vote_proposal): wallet carol already voted"), "{err}");
    assert_eq!(run(&mut vm, "carol", &[vote("P001")]), Outcome::Applied);
    assert_eq!(
        vm.state().record(Table::Proposal, "P001"),
        Some(&Record::Proposal { description: "Increase Research Funding".into(), votes: 3 })
    );
    for (bad, reason) in [
        (json!({"action": "vote_proposal"}), "missing field 'proposal'"),
        (
            json!({"action": "vote_proposal", "proposal": {"id": "P9"}}),
            "missing field 'proposal.description'",
        ),
        (
            json!({"action": "vote_proposal", "proposal": {"id": "P9", "description": 1}}),
            "field 'proposal.description' must be a string",
        ),
    ] {
        assert_eq!(reject(&mut vm, "carol", &[bad]), format!("action 0 (vote_proposal): {reason}"));
    }
    let other = json!({"action": "vote_proposal", "proposal": {"id": "P001", "description": "Cut funding"}});
    assert!(
        reject(&mut vm, "carol", &[other])
            .ends_with("proposal P001 exists with a different description")
    );
}

#[test]
fn generate_nft_mints_for_the_signer_with_canonical_metadata() {
    let mut vm = vm();
    assert_eq!(run(&mut vm, "alice", &[nft("NFT001")]), Outcome::Applied);
    let Some(Record::Nft { owner, metadata, name }) = vm.state().record(Table::Nft, "NFT001")
    else {
        panic!("minted")
    };
    assert_eq!((owner.as_str(), name.as_str()), ("alice", "RareArt"));
    assert_eq!(
        metadata,
        r#"{"artist":"Alice","creation_date":"2024-11-23","description":"A rare piece of digital art."}"#
    );
    assert!(reject(&mut vm, "bob", &[nft("NFT001")]).ends_with("nft NFT001 already exists"));
    let bad =
        json!({"action": "generate_nft", "nft": {"id": "N2", "name": "x", "metadata": "artist"}});
    assert!(reject(&mut vm, "bob", &[bad]).ends_with("field 'nft.metadata' must be an object"));
}

#[test]
fn enroll_student_needs_both_and_enrolls_once() {
    let mut vm = vm();
    let enroll = json!({"action": "enroll_student", "student_id": "S001", "course_id": "C001"});
    assert!(
        reject(&mut vm, "alice", std::slice::from_ref(&enroll))
            .ends_with("student S001 does not exist")
    );
    run(&mut vm, "alice", &[student("S001")]);
    assert!(
        reject(&mut vm, "alice", std::slice::from_ref(&enroll))
            .ends_with("course C001 does not exist")
    );
    // Course and enrollment in one contract: later actions see earlier staged writes.
    assert_eq!(run(&mut vm, "alice", &[course("C001"), enroll.clone()]), Outcome::Applied);
    assert_eq!(vm.state().record(Table::Enrollment, "S001/C001"), Some(&Record::Enrollment));
    assert!(
        reject(&mut vm, "bob", &[enroll])
            .ends_with("student S001 is already enrolled in course C001")
    );
    let missing = json!({"action": "enroll_student", "student_id": "S001"});
    assert!(reject(&mut vm, "bob", &[missing]).ends_with("missing field 'course_id'"));
}

#[test]
fn transfer_nft_only_by_owner_to_registered_wallet() {
    let mut vm = vm();
    run(&mut vm, "alice", &[nft("NFT001")]);
    let to = |w: &str| json!({"action": "transfer_nft", "nft_id": "NFT001", "to": w});
    assert!(
        reject(&mut vm, "bob", &[to("bob")])
            .ends_with("nft NFT001 is owned by alice, not by the signer")
    );
    assert!(
        reject(&mut vm, "alice", &[to("mallory")]).ends_with("wallet mallory is not registered")
    );
    assert!(
        reject(&mut vm, "alice", &[to("alice")])
            .ends_with("nft NFT001 already belongs to that wallet")
    );
    for (bad, reason) in [
        (json!({"action": "transfer_nft", "to": "bob"}), "missing field 'nft_id'"),
        (json!({"action": "transfer_nft", "nft_id": "NFT001"}), "missing field 'to'"),
        (
            json!({"action": "transfer_nft", "nft_id": "NFT001", "to": 5}),
            "field 'to' must be a string",
        ),
    ] {
        assert_eq!(reject(&mut vm, "alice", &[bad]), format!("action 0 (transfer_nft): {reason}"));
    }
    let none = json!({"action": "transfer_nft", "nft_id": "NFT404", "to": "bob"});
    assert!(reject(&mut vm, "alice", &[none]).ends_with("nft NFT404 does not exist"));
    assert_eq!(run(&mut vm, "alice", &[to("bob")]), Outcome::Applied);
    let Some(Record::Nft { owner, .. }) = vm.state().record(Table::Nft, "NFT001") else { panic!() };
    assert_eq!(owner, "bob");
    assert!(reject(&mut vm, "alice", &[to("carol")]).ends_with("owned by bob, not by the signer"));
}

#[test]
fn contracts_are_atomic() {
    let mut vm = vm();
    // The third action fails, so the first two must not apply either.
    let err = reject(&mut vm, "alice", &[student("S001"), course("C001"), student("S001")]);
    assert!(err.starts_with("action 2 (register_student)"), "{err}");
    assert!(vm.state().record(Table::Student, "S001").is_none());
    assert!(vm.state().record(Table::Course, "C001").is_none());
    // The same nonce is still free.
    assert_eq!(vm.nonce("alice"), 0);
    assert_eq!(run(&mut vm, "alice", &[student("S001"), course("C001")]), Outcome::Applied);
    assert_eq!(vm.nonce("alice"), 1);
}

#[test]
fn contract_level_rules() {
    let mut vm = vm();
    let exec = |vm: &mut Machine, signer: &str, nonce: u64, actions: &[Value]| {
        vm.execute(&Contract { signer, nonce, actions })
    };
    let r = |o: Outcome| match o {
        Outcome::Rejected(r) => r,
        Outcome::Applied => panic!("applied"),
    };
    assert_eq!(
        r(exec(&mut vm, "mallory", 1, &[student("S1")])),
        Rejection::UnregisteredSigner("mallory".into())
    );
    assert_eq!(exec(&mut vm, "alice", 10, &[student("S1")]), Outcome::Applied);
    assert_eq!(
        r(exec(&mut vm, "alice", 10, &[student("S2")])),
        Rejection::StaleNonce { last: 10, got: 10 }
    );
    assert_eq!(
        r(exec(&mut vm, "alice", 9, &[student("S2")])),
        Rejection::StaleNonce { last: 10, got: 9 }
    );
    assert_eq!(r(exec(&mut vm, "bob", 0, &[student("S2")])), Rejection::NonceOutOfRange(0));
    assert_eq!(
        r(exec(&mut vm, "bob", 1 << 53, &[student("S2")])),
        Rejection::NonceOutOfRange(1 << 53)
    );
    assert_eq!(r(exec(&mut vm, "bob", 1, &[])), Rejection::NoActions);
    let many = vec![student("S9"); swarmvm_vm::MAX_ACTIONS + 1];
    assert_eq!(
        r(exec(&mut vm, "bob", 1, &many)),
        Rejection::TooManyActions(swarmvm_vm::MAX_ACTIONS + 1)
    );
    assert_eq!(
        r(exec(&mut vm, "bob", 1, &[json!("register_student")])),
        Rejection::MalformedAction { index: 0 }
    );
    assert_eq!(
        r(exec(&mut vm, "bob", 1, &[json!({"action": 3})])),
        Rejection::MalformedAction { index: 0 }
    );
    let err = r(exec(&mut vm, "bob", 1, &[json!({"action": "drop_tables"})]));
    assert_eq!(err.to_string(), "action 0: 'drop_tables' is not a registered operation");
}

/// Found by the `contract_execute` fuzz target: names from the input are echoed escaped, so
/// a reason stays one line and cannot carry terminal escapes.
#[test]
fn reasons_escape_control_characters_from_the_input() {
    let mut vm = vm();
    let err = reject(&mut vm, "alice", &[json!({"action": "vote\n\u{1b}[2J"})]);
    assert_eq!(err, "action 0: 'vote\\n\\u{1b}[2J' is not a registered operation");
    let mut bad = student("S1");
    bad["student"]["x\ny"] = json!(1);
    let err = reject(&mut vm, "alice", &[bad]);
    assert_eq!(err, "action 0 (register_student): unknown field 'student.x\\ny'");
    let err = reject(&mut vm, "eve\r", &[student("S1")]);
    assert_eq!(err, "signer eve\\r is not a registered wallet");
}

#[test]
fn unregistered_actions_fail_even_when_the_catalogue_has_them() {
    let mut vm = Machine::new();
    vm.register_operation("register_student", "register_student").unwrap();
    vm.register_wallet("alice", "a", "{}").unwrap();
    let err = reject(&mut vm, "alice", &[course("C1")]);
    assert_eq!(err, "action 0: 'add_course' is not a registered operation");
    // An action name may be bound to any catalogue handler, as the note's mapping allows.
    vm.register_operation("new_course", "add_course").unwrap();
    let mut renamed = course("C1");
    renamed["action"] = json!("new_course");
    assert_eq!(run(&mut vm, "alice", &[renamed]), Outcome::Applied);
    assert!(vm.register_operation("x", "print_money").is_err());
}

#[test]
fn a_batch_is_staged_until_it_is_applied() {
    let mut m = vm();
    run(&mut m, "alice", &[student("S001")]);
    let before = m.state_root();
    let mut overlay = Overlay::new(m.state());
    let contract = |signer, nonce, action: &Value| (signer, nonce, vec![action.clone()]);
    for (signer, nonce, actions) in
        [contract("alice", 2, &student("S002")), contract("bob", 1, &nft("N1"))]
    {
        let outcome = m.vm().execute(&mut overlay, &Contract { signer, nonce, actions: &actions });
        assert_eq!(outcome.unwrap(), Outcome::Applied);
    }
    m.vm().register_operation(&mut overlay, "extra", "add_course").unwrap();
    assert!(overlay.get(Table::Student, "S002").unwrap().is_some(), "the batch sees its writes");
    drop(overlay);
    assert_eq!(m.state_root(), before, "nothing reached the state");
    assert_eq!(m.nonce("alice"), 1);

    let mut overlay = Overlay::new(m.state());
    let actions = [student("S002")];
    m.vm()
        .execute(&mut overlay, &Contract { signer: "alice", nonce: 2, actions: &actions })
        .unwrap();
    // A rejected contract in the same batch leaves no trace in its changes.
    let bad = [student("S002")];
    let rejected =
        m.vm().execute(&mut overlay, &Contract { signer: "bob", nonce: 1, actions: &bad });
    assert!(!rejected.unwrap().is_applied());
    let changes = overlay.into_changes();
    let keys: Vec<(Table, &str)> = changes.iter().map(|(t, id, _)| (t, id)).collect();
    assert_eq!(keys, [(Table::Nonce, "alice"), (Table::Student, "S002")]);
}
