//! The `Handler` trait, the context handlers run in, and the built-in catalogue.
//!
//! A handler sees the state only through [`Ctx`]: reads see the contract's own earlier
//! writes, and every write is journaled so that a contract that fails is undone whole. A handler never does
//! I/O and never reads a clock, so every peer computes the same result.

use std::collections::BTreeMap;
use std::fmt;

use compact_str::CompactString;

use crate::access::{Overlay, StateRead as _};
use crate::error::{ActionError, MAX_DESCRIPTION_LEN, MAX_TEXT_LEN};
use crate::fields::{Args, id, metadata, object, only_fields, text};
use crate::state::{Record, Table};

/// One kind of action the VM can run. Implementations must be deterministic: the same state
/// and arguments give the same writes or the same error on every machine.
pub trait Handler: Send + Sync {
    /// The catalogue name that `operations` tokens bind actions to.
    fn name(&self) -> &'static str;

    /// Validates `args` (the action's JSON object, including its `action` member) and
    /// stages writes through `ctx`. An error rejects the whole contract; [`ActionError::Storage`]
    /// (a failed read, from `ctx`) stops the batch instead.
    fn apply(&self, ctx: &mut Ctx<'_, '_>, args: &Args) -> Result<(), ActionError>;
}

/// What a handler may see and do: read the state (including this contract's earlier
/// writes), write to it, and know who signed. Writes are staged in the batch's [`Overlay`],
/// so a contract that fails later is undone whole.
pub struct Ctx<'a, 's> {
    state: &'a mut Overlay<'s>,
    signer: &'a str,
}

impl fmt::Debug for Ctx<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").field("signer", &self.signer).finish_non_exhaustive()
    }
}

impl<'a, 's> Ctx<'a, 's> {
    /// A context over `state` for a contract signed by `signer`.
    pub fn new(state: &'a mut Overlay<'s>, signer: &'a str) -> Self {
        Self { state, signer }
    }

    /// The wallet id that signed the contract.
    pub fn signer(&self) -> &str {
        self.signer
    }

    /// The record at `id` in `table`.
    pub fn get(&self, table: Table, id: &str) -> Result<Option<Record>, ActionError> {
        self.state.get(table, id).map_err(ActionError::Storage)
    }

    /// True when an entry exists at `id` in `table`.
    pub fn exists(&self, table: Table, id: &str) -> Result<bool, ActionError> {
        Ok(self.get(table, id)?.is_some())
    }

    /// Writes `record` at `id` (in the record's table), replacing what was there.
    pub fn put(&mut self, id: &str, record: Record) {
        self.state.put(id, record);
    }

    /// Removes the entry at `id` in `table`.
    pub fn remove(&mut self, table: Table, id: &str) {
        self.state.remove(table, id);
    }

    /// Writes `record` at `id` only if nothing is there; returns false (and writes nothing)
    /// when the entry exists.
    pub fn create(&mut self, id: &str, record: Record) -> Result<bool, ActionError> {
        if self.exists(record.table(), id)? {
            return Ok(false);
        }
        self.put(id, record);
        Ok(true)
    }
}

/// The handlers a VM can run, by name. Tokens may only bind actions to names found here.
pub struct Catalogue {
    handlers: BTreeMap<&'static str, Box<dyn Handler>>,
}

impl fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.handlers.keys()).finish()
    }
}

impl Default for Catalogue {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Catalogue {
    /// An empty catalogue.
    pub fn empty() -> Self {
        Self { handlers: BTreeMap::new() }
    }

    /// The built-in handlers: the design note's four and `enroll_student`, `transfer_nft`.
    pub fn builtin() -> Self {
        let mut c = Self::empty();
        c.insert(Box::new(RegisterStudent));
        c.insert(Box::new(AddCourse));
        c.insert(Box::new(VoteProposal));
        c.insert(Box::new(GenerateNft));
        c.insert(Box::new(EnrollStudent));
        c.insert(Box::new(TransferNft));
        c
    }

    /// Adds (or replaces) a handler under its name; for tests and future handler kinds.
    pub fn insert(&mut self, handler: Box<dyn Handler>) {
        self.handlers.insert(handler.name(), handler);
    }

    /// The handler with this name.
    pub fn get(&self, name: &str) -> Option<&dyn Handler> {
        self.handlers.get(name).map(AsRef::as_ref)
    }

    /// Handler names in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }
}

/// `register_student {student: {id, name, department}}`: a new student.
#[derive(Debug)]
pub struct RegisterStudent;

impl Handler for RegisterStudent {
    fn name(&self) -> &'static str {
        "register_student"
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, args: &Args) -> Result<(), ActionError> {
        let s = object(args, "student", "student")?;
        let id = id(s, "id", "student.id")?;
        let name = text(s, "name", "student.name", MAX_TEXT_LEN)?;
        let department = text(s, "department", "student.department", MAX_TEXT_LEN)?;
        only_fields(args, &["action", "student"], 2, "")?;
        only_fields(s, &["id", "name", "department"], 3, "student")?;
        let record = Record::Student { name: name.into(), department: department.into() };
        if !ctx.create(id, record)? {
            return Err(ActionError::Exists { what: "student", id: id.to_owned() });
        }
        Ok(())
    }
}

/// `add_course {course: {id, name, department}}`: a new course.
#[derive(Debug)]
pub struct AddCourse;

impl Handler for AddCourse {
    fn name(&self) -> &'static str {
        "add_course"
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, args: &Args) -> Result<(), ActionError> {
        let c = object(args, "course", "course")?;
        let id = id(c, "id", "course.id")?;
        let name = text(c, "name", "course.name", MAX_TEXT_LEN)?;
        let department = text(c, "department", "course.department", MAX_TEXT_LEN)?;
        only_fields(args, &["action", "course"], 2, "")?;
        only_fields(c, &["id", "name", "department"], 3, "course")?;
        let record = Record::Course { name: name.into(), department: department.into() };
        if !ctx.create(id, record)? {
            return Err(ActionError::Exists { what: "course", id: id.to_owned() });
        }
        Ok(())
    }
}

/// `vote_proposal {proposal: {id, description}}`: the first vote creates the proposal; each
/// wallet votes once.
#[derive(Debug)]
pub struct VoteProposal;

impl Handler for VoteProposal {
    fn name(&self) -> &'static str {
        "vote_proposal"
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, args: &Args) -> Result<(), ActionError> {
        let p = object(args, "proposal", "proposal")?;
        let id = id(p, "id", "proposal.id")?;
        let description = text(p, "description", "proposal.description", MAX_DESCRIPTION_LEN)?;
        only_fields(args, &["action", "proposal"], 2, "")?;
        only_fields(p, &["id", "description"], 2, "proposal")?;
        let votes = match ctx.get(Table::Proposal, id)? {
            None => 0,
            Some(Record::Proposal { description: existing, votes }) => {
                if existing != description {
                    return Err(ActionError::DescriptionMismatch(id.to_owned()));
                }
                votes
            }
            Some(_) => unreachable!("the proposal table holds proposals"),
        };
        let vote_key = format!("{id}/{}", ctx.signer());
        if ctx.exists(Table::Vote, &vote_key)? {
            return Err(ActionError::AlreadyVoted {
                proposal: id.to_owned(),
                wallet: ctx.signer().to_owned(),
            });
        }
        ctx.put(&vote_key, Record::Vote);
        ctx.put(id, Record::Proposal { description: description.into(), votes: votes + 1 });
        Ok(())
    }
}

/// `generate_nft {nft: {id, name, metadata}}`: mints an NFT owned by the signer.
#[derive(Debug)]
pub struct GenerateNft;

impl Handler for GenerateNft {
    fn name(&self) -> &'static str {
        "generate_nft"
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, args: &Args) -> Result<(), ActionError> {
        let n = object(args, "nft", "nft")?;
        let id = id(n, "id", "nft.id")?;
        let name = text(n, "name", "nft.name", MAX_TEXT_LEN)?;
        let metadata = metadata(n, "metadata", "nft.metadata")?;
        only_fields(args, &["action", "nft"], 2, "")?;
        only_fields(n, &["id", "name", "metadata"], 3, "nft")?;
        let owner = CompactString::from(ctx.signer());
        if !ctx.create(id, Record::Nft { name: name.into(), metadata: metadata.into(), owner })? {
            return Err(ActionError::Exists { what: "nft", id: id.to_owned() });
        }
        Ok(())
    }
}

/// `enroll_student {student_id, course_id}`: both must exist; once per pair.
#[derive(Debug)]
pub struct EnrollStudent;

impl Handler for EnrollStudent {
    fn name(&self) -> &'static str {
        "enroll_student"
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, args: &Args) -> Result<(), ActionError> {
        let student = id(args, "student_id", "student_id")?;
        let course = id(args, "course_id", "course_id")?;
        only_fields(args, &["action", "student_id", "course_id"], 3, "")?;
        if !ctx.exists(Table::Student, student)? {
            return Err(ActionError::NotFound { what: "student", id: student.to_owned() });
        }
        if !ctx.exists(Table::Course, course)? {
            return Err(ActionError::NotFound { what: "course", id: course.to_owned() });
        }
        let key = format!("{student}/{course}");
        if !ctx.create(&key, Record::Enrollment)? {
            return Err(ActionError::AlreadyEnrolled {
                student: student.to_owned(),
                course: course.to_owned(),
            });
        }
        Ok(())
    }
}

/// `transfer_nft {nft_id, to}`: only the owner may transfer, and only to a registered wallet.
#[derive(Debug)]
pub struct TransferNft;

impl Handler for TransferNft {
    fn name(&self) -> &'static str {
        "transfer_nft"
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, args: &Args) -> Result<(), ActionError> {
        let nft = id(args, "nft_id", "nft_id")?;
        let to = id(args, "to", "to")?;
        only_fields(args, &["action", "nft_id", "to"], 3, "")?;
        let Some(Record::Nft { name, metadata, owner }) = ctx.get(Table::Nft, nft)? else {
            return Err(ActionError::NotFound { what: "nft", id: nft.to_owned() });
        };
        if owner != ctx.signer() {
            return Err(ActionError::NotOwner { nft: nft.to_owned(), owner: owner.to_string() });
        }
        if owner == to {
            return Err(ActionError::SelfTransfer(nft.to_owned()));
        }
        let record = Record::Nft { name, metadata, owner: to.into() };
        if !ctx.exists(Table::Wallet, to)? {
            return Err(ActionError::UnregisteredWallet(to.to_owned()));
        }
        ctx.put(nft, record);
        Ok(())
    }
}
