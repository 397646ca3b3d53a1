//! Why a replica refused a message or could not do what it was asked.

/// Why a message between replicas was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// It is for another network.
    #[error("the message is for another network ({0})")]
    OtherNetwork(String),
    /// It is for another replica.
    #[error("the message is for another replica ({0})")]
    OtherRecipient(String),
    /// It came from another replica than the one asked.
    #[error("the reply came from another replica ({0})")]
    OtherSender(String),
    /// It is of another kind than expected.
    #[error("the message is a {found}, not a {expected}")]
    Kind {
        /// Its kind.
        found: String,
        /// The kind expected.
        expected: String,
    },
    /// A reply that does not answer the request sent.
    #[error("the reply answers another request (nonce)")]
    Nonce,
    /// Its sender is not a member of the authority set in force.
    #[error("{0} is not a member of the authority set in force")]
    NotMember(String),
    /// Its signature does not hold.
    #[error("the signature does not hold: {0}")]
    Signature(String),
    /// Its body is not what its kind carries.
    #[error("the body cannot be read: {0}")]
    Body(String),
    /// Its term is not the term of what it carries.
    #[error("the message is signed for term {signed}, its body is of term {body}")]
    Term {
        /// The term signed.
        signed: u64,
        /// The body's term.
        body: u64,
    },
    /// A proposal or join taken before (the same sender, term and nonce).
    #[error("the message was taken before (a replay)")]
    Replayed,
    /// It could not be signed.
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// Why a replica could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A message was refused.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The log could not be opened or written.
    #[error("the replica's log: {0}")]
    Store(String),
    /// The consensus engine refused or failed.
    #[error("consensus: {0}")]
    Engine(String),
    /// Another replica could not be reached or answered with an error.
    #[error("replica {url}: {why}")]
    Peer {
        /// Its URL.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// Nothing listens at another replica's address.
    #[error("replica {url} cannot be reached: {why}")]
    Unreachable {
        /// Its URL.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// No leader is known now (an election is going on, or a majority is down).
    #[error("no leader is known now; try again in a moment")]
    NoLeader,
    /// A majority did not take the command within the time allowed (this replica may be
    /// cut off from the others); whether it is committed later is not known.
    #[error("a majority did not take it within {0:?}")]
    TimedOut(std::time::Duration),
    /// The replica is stopping.
    #[error("the replica is stopping")]
    Stopping,
}
