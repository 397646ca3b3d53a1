//! The state as JSON, for people and APIs (not hashed; the root is over the canonical
//! encoding). Objects are keyed by id; every list is in id order.

use serde_json::{Map, Value, json};

use crate::state::{Record, State, Table};

impl State {
    /// The whole state as one JSON object: `operations`, `wallets`, `nonces`, `students`
    /// (each with its `courses`), `courses`, `proposals` (with `votes` and `voters`) and
    /// `nfts` (with their `owner` and parsed `metadata`).
    pub fn to_json(&self) -> Value {
        let mut operations = Map::new();
        for (action, r) in self.table(Table::Operation) {
            if let Record::Operation { handler } = r {
                operations.insert(action.into(), json!(handler.as_str()));
            }
        }
        let mut wallets = Map::new();
        for (id, r) in self.table(Table::Wallet) {
            if let Record::Wallet { label, key } = r {
                let jwk: Value = serde_json::from_str(key).unwrap_or(Value::Null);
                wallets.insert(id.into(), json!({"label": label.as_str(), "jwk": jwk}));
            }
        }
        let mut nonces = Map::new();
        for (id, r) in self.table(Table::Nonce) {
            if let Record::Nonce { last } = r {
                nonces.insert(id.into(), json!(last));
            }
        }
        let mut enrollments: Map<String, Value> = Map::new();
        for (key, _) in self.table(Table::Enrollment) {
            if let Some((student, course)) = key.split_once('/') {
                let list = enrollments.entry(student).or_insert_with(|| json!([]));
                if let Value::Array(list) = list {
                    list.push(json!(course));
                }
            }
        }
        let mut students = Map::new();
        for (id, r) in self.table(Table::Student) {
            if let Record::Student { name, department } = r {
                let courses = enrollments.get(id).cloned().unwrap_or_else(|| json!([]));
                students.insert(
                    id.into(),
                    json!({"name": name.as_str(), "department": department.as_str(), "courses": courses}),
                );
            }
        }
        let mut courses = Map::new();
        for (id, r) in self.table(Table::Course) {
            if let Record::Course { name, department } = r {
                courses.insert(
                    id.into(),
                    json!({"name": name.as_str(), "department": department.as_str()}),
                );
            }
        }
        let mut voters: Map<String, Value> = Map::new();
        for (key, _) in self.table(Table::Vote) {
            if let Some((proposal, wallet)) = key.split_once('/') {
                let list = voters.entry(proposal).or_insert_with(|| json!([]));
                if let Value::Array(list) = list {
                    list.push(json!(wallet));
                }
            }
        }
        let mut proposals = Map::new();
        for (id, r) in self.table(Table::Proposal) {
            if let Record::Proposal { description, votes } = r {
                let who = voters.get(id).cloned().unwrap_or_else(|| json!([]));
                proposals.insert(
                    id.into(),
                    json!({"description": description.as_str(), "votes": votes, "voters": who}),
                );
            }
        }
        let mut nfts = Map::new();
        for (id, r) in self.table(Table::Nft) {
            if let Record::Nft { name, metadata, owner } = r {
                let metadata: Value = serde_json::from_str(metadata).unwrap_or(Value::Null);
                nfts.insert(
                    id.into(),
                    json!({"name": name.as_str(), "owner": owner.as_str(), "metadata": metadata}),
                );
            }
        }
        json!({
            "operations": operations,
            "wallets": wallets,
            "nonces": nonces,
            "students": students,
            "courses": courses,
            "proposals": proposals,
            "nfts": nfts,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Contract, Vm};

    #[test]
    fn json_view_shows_every_table() {
        let mut vm = Vm::new();
        for h in crate::HANDLER_NAMES {
            vm.register_operation(h, h).unwrap();
        }
        vm.register_wallet("alice", "peer1", r#"{"kty":"OKP"}"#).unwrap();
        let actions = [
            json!({"action": "register_student", "student": {"id": "S1", "name": "N", "department": "D"}}),
            json!({"action": "add_course", "course": {"id": "C1", "name": "CN", "department": "D"}}),
            json!({"action": "enroll_student", "student_id": "S1", "course_id": "C1"}),
            json!({"action": "vote_proposal", "proposal": {"id": "P1", "description": "x"}}),
            json!({"action": "generate_nft", "nft": {"id": "N1", "name": "A", "metadata": {"k": [1]}}}),
        ];
        assert!(
            vm.execute(&Contract { signer: "alice", nonce: 5, actions: &actions }).is_applied()
        );
        let v = vm.state().to_json();
        assert_eq!(v["students"]["S1"], json!({"name": "N", "department": "D", "courses": ["C1"]}));
        assert_eq!(
            v["proposals"]["P1"],
            json!({"description": "x", "votes": 1, "voters": ["alice"]})
        );
        assert_eq!(v["nfts"]["N1"], json!({"name": "A", "owner": "alice", "metadata": {"k": [1]}}));
        assert_eq!(v["nonces"]["alice"], 5);
        assert_eq!(v["wallets"]["alice"]["label"], "peer1");
        assert_eq!(v["operations"]["add_course"], "add_course");
        assert_eq!(v["courses"]["C1"]["name"], "CN");
    }
}
