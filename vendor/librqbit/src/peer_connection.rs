use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{Error, Result, session::CheckedIncomingConnection, stream_connect::ConnectionKind};
use buffers::{ByteBuf, ByteBufOwned};
use futures::TryFutureExt;
use librqbit_core::{
    hash_id::Id20,
    lengths::{ChunkInfo, ValidPieceIndex},
    peer_id::try_decode_peer_id,
};
use parking_lot::RwLock;
use peer_binary_protocol::{
    Handshake, MAX_MSG_LEN, Message,
    extended::{
        ExtendedMessage, PeerExtendedMessageIds, handshake::ExtendedHandshake,
        ut_metadata::UtMetadata, ut_pex::UtPex,
    },
    serialize_piece_preamble,
};
use serde::{Deserialize, Serialize};
use serde_with::serde_as;
use tokio::time::timeout;
use tracing::{Instrument, debug, trace, trace_span};

use crate::{
    read_buf::ReadBuf,
    spawn_utils::BlockingSpawner,
    stream_connect::StreamConnector,
    type_aliases::{BoxAsyncReadVectored, BoxAsyncWrite},
};

pub trait PeerConnectionHandler {
    fn on_connected(&self, _connection_time: Duration) {}
    fn should_send_bitfield(&self) -> bool;
    fn serialize_bitfield_message_to_buf(&self, buf: &mut [u8]) -> anyhow::Result<usize>;
    fn on_handshake(&self, handshake: Handshake, ckind: ConnectionKind) -> anyhow::Result<()>;
    fn on_extended_handshake(
        &self,
        extended_handshake: &ExtendedHandshake<ByteBuf>,
    ) -> anyhow::Result<()>;
    async fn on_received_message(&self, msg: Message<'_>) -> anyhow::Result<()>;
    fn should_transmit_have(&self, id: ValidPieceIndex) -> bool;
    /// swarmvm patch: the haves to send again after this connection's writer fell behind
    /// the have broadcast and lost some: every piece we have that the peer is not known
    /// to have.
    fn haves_to_resend(&self) -> Vec<ValidPieceIndex> {
        Vec::new()
    }
    fn on_uploaded_bytes(&self, bytes: u32);
    fn read_chunk(&self, chunk: &ChunkInfo, buf: &mut [u8]) -> anyhow::Result<()>;
    fn update_my_extended_handshake(
        &self,
        _handshake: &mut ExtendedHandshake<ByteBuf>,
    ) -> anyhow::Result<()> {
        Ok(())
    }
    fn client_name_and_version(&self) -> &str {
        crate::client_name_and_version()
    }
}

#[derive(Debug)]
pub enum WriterRequest {
    Message(Message<'static>),
    UtMetadata(UtMetadata<ByteBufOwned>),
    UtPex(UtPex<ByteBufOwned>),
    ReadChunkRequest(ChunkInfo),
    Disconnect(anyhow::Result<()>),
}

#[serde_as]
#[derive(Default, Debug, Copy, Clone, Serialize, Deserialize, Eq, PartialEq)]
pub struct PeerConnectionOptions {
    #[serde_as(as = "Option<serde_with::DurationSeconds>")]
    pub connect_timeout: Option<Duration>,

    #[serde_as(as = "Option<serde_with::DurationSeconds>")]
    pub read_write_timeout: Option<Duration>,

    #[serde_as(as = "Option<serde_with::DurationSeconds>")]
    pub keep_alive_interval: Option<Duration>,

    /// The most chunk requests to keep outstanding per peer (default 128, and
    /// never more than the peer's reqq). A newly needed piece, such as the
    /// one at a stream's read position after a seek, is requested only after
    /// those, so a smaller window makes streams react faster to seeks.
    pub max_request_window: Option<usize>,
}

pub(crate) struct PeerConnection<H> {
    handler: H,
    addr: SocketAddr,
    info_hash: Id20,
    peer_id: Id20,
    options: PeerConnectionOptions,
    spawner: BlockingSpawner,
    connector: Arc<StreamConnector>,
}

#[cfg(not(feature = "miri"))]
pub(crate) async fn with_timeout<T>(
    name: &'static str,
    timeout_value: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
) -> crate::Result<T> {
    match timeout(timeout_value, fut).await {
        Ok(v) => v,
        Err(_) => Err(Error::Timeout(name)),
    }
}

#[cfg(feature = "miri")]
pub(crate) async fn with_timeout<T>(
    _name: &'static str,
    _timeout_value: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
) -> crate::Result<T> {
    fut.await
}

/// swarmvm patch: the writer's buffer holds several messages, so that the messages waiting
/// at once go out in one write (four 16 KiB pieces, or hundreds of haves and requests).
const WRITE_BUF_LEN: usize = 4 * MAX_MSG_LEN;

/// swarmvm patch: what the writer sends, from the torrent's have broadcast and from this
/// peer's own channel, with the haves to send again after the broadcast lagged.
struct WriterQueue {
    outgoing_chan: tokio::sync::mpsc::UnboundedReceiver<WriterRequest>,
    have_broadcast: tokio::sync::broadcast::Receiver<ValidPieceIndex>,
    broadcast_closed: bool,
    /// Haves lost to a lagging broadcast, sent one by one.
    resend: std::collections::VecDeque<ValidPieceIndex>,
}

impl WriterQueue {
    /// A resent have the peer still needs, if any is left.
    fn next_resend(&mut self, handler: &impl PeerConnectionHandler) -> Option<WriterRequest> {
        while let Some(id) = self.resend.pop_front() {
            if handler.should_transmit_have(id) {
                return Some(WriterRequest::Message(Message::Have(id.get())));
            }
        }
        None
    }

    /// What one receive from the have broadcast means for this peer: a have to send, or
    /// nothing (the peer has the piece; the broadcast lagged, and the lost haves are queued
    /// to resend; it closed).
    fn on_broadcast(
        &mut self,
        handler: &impl PeerConnectionHandler,
        got: std::result::Result<ValidPieceIndex, tokio::sync::broadcast::error::RecvError>,
    ) -> Option<WriterRequest> {
        use tokio::sync::broadcast::error::RecvError;
        match got {
            Ok(id) if handler.should_transmit_have(id) => {
                Some(WriterRequest::Message(Message::Have(id.get())))
            }
            Ok(_) => None,
            Err(RecvError::Lagged(lost)) => {
                // Upstream dropped the lost haves, and the peer then never learned of those
                // pieces from us.
                debug!(lost, "have broadcast lagged; sending the missing haves");
                self.resend = handler.haves_to_resend().into();
                None
            }
            Err(RecvError::Closed) => {
                debug!("broadcast channel closed, will not poll it anymore");
                self.broadcast_closed = true;
                None
            }
        }
    }

    /// The next message that is ready to send, without waiting.
    fn try_next(&mut self, handler: &impl PeerConnectionHandler) -> Option<WriterRequest> {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        loop {
            if let Some(have) = self.next_resend(handler) {
                return Some(have);
            }
            if self.broadcast_closed {
                break;
            }
            let got = match self.have_broadcast.try_recv() {
                Ok(id) => Ok(id),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            if let Some(have) = self.on_broadcast(handler, got) {
                return Some(have);
            }
        }
        self.outgoing_chan.try_recv().ok()
    }

    /// The next message to send, waiting for one; a keep-alive after `keep_alive` of quiet.
    async fn next(
        &mut self,
        handler: &impl PeerConnectionHandler,
        keep_alive: Duration,
    ) -> Result<WriterRequest> {
        loop {
            if let Some(have) = self.next_resend(handler) {
                return Ok(have);
            }
            tokio::select! {
                got = self.have_broadcast.recv(), if !self.broadcast_closed => {
                    if let Some(have) = self.on_broadcast(handler, got) {
                        return Ok(have);
                    }
                }
                r = timeout(keep_alive, self.outgoing_chan.recv()) => return match r {
                    Ok(Some(msg)) => Ok(msg),
                    Ok(None) => Err(Error::TorrentIsNotLive),
                    Err(_) => Ok(WriterRequest::Message(Message::KeepAlive)),
                },
            }
        }
    }
}

struct ManagePeerArgs {
    handshake_supports_extended: bool,
    read_buf: ReadBuf,
    write_buf: Box<[u8; WRITE_BUF_LEN]>,
    read: BoxAsyncReadVectored,
    write: BoxAsyncWrite,
    outgoing_chan: tokio::sync::mpsc::UnboundedReceiver<WriterRequest>,
    have_broadcast: tokio::sync::broadcast::Receiver<ValidPieceIndex>,
}

impl<H: PeerConnectionHandler> PeerConnection<H> {
    pub fn new(
        addr: SocketAddr,
        info_hash: Id20,
        peer_id: Id20,
        handler: H,
        options: Option<PeerConnectionOptions>,
        spawner: BlockingSpawner,
        connector: Arc<StreamConnector>,
    ) -> Self {
        PeerConnection {
            handler,
            addr,
            info_hash,
            peer_id,
            spawner,
            options: options.unwrap_or_default(),
            connector,
        }
    }

    // By the time this is called:
    // read_buf should start with valuable data. The handshake should be removed from it.
    pub async fn manage_peer_incoming(
        &self,
        outgoing_chan: tokio::sync::mpsc::UnboundedReceiver<WriterRequest>,
        mut incoming: CheckedIncomingConnection,
        have_broadcast: tokio::sync::broadcast::Receiver<ValidPieceIndex>,
    ) -> Result<()> {
        use tokio::io::AsyncWriteExt;

        let rwtimeout = self
            .options
            .read_write_timeout
            .unwrap_or_else(|| Duration::from_secs(10));

        if incoming.handshake.info_hash != self.info_hash {
            return Err(Error::WrongInfoHash);
        }

        if incoming.handshake.peer_id == self.peer_id {
            return Err(Error::ConnectingToOurselves);
        }

        trace!(
            "incoming connection: id={:?}",
            try_decode_peer_id(incoming.handshake.peer_id)
        );

        let mut write_buf = Box::new([0u8; WRITE_BUF_LEN]);
        let my_handshake = Handshake::new(self.info_hash, self.peer_id);
        let hlen = my_handshake.serialize_unchecked_len(&mut *write_buf);
        with_timeout(
            "writing handshake",
            rwtimeout,
            incoming
                .writer
                .write_all(&write_buf[..hlen])
                .map_err(Error::WriteHandshake),
        )
        .await?;

        // What the peer supports is in the peer's handshake, not in ours.
        let handshake_supports_extended = incoming.handshake.supports_extended();

        self.handler
            .on_handshake(incoming.handshake, incoming.kind)
            .map_err(Error::Anyhow)?;

        self.manage_peer(ManagePeerArgs {
            handshake_supports_extended,
            read_buf: incoming.read_buf,
            write_buf,
            read: incoming.reader,
            write: incoming.writer,
            outgoing_chan,
            have_broadcast,
        })
        .await
    }

    pub async fn manage_peer_outgoing(
        &self,
        outgoing_chan: tokio::sync::mpsc::UnboundedReceiver<WriterRequest>,
        have_broadcast: tokio::sync::broadcast::Receiver<ValidPieceIndex>,
    ) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let rwtimeout = self
            .options
            .read_write_timeout
            .unwrap_or_else(|| Duration::from_secs(10));

        let connect_timeout = self
            .options
            .connect_timeout
            .unwrap_or_else(|| Duration::from_secs(10));

        let now = Instant::now();
        let (ckind, mut read, mut write) = with_timeout(
            "connecting",
            connect_timeout,
            self.connector.connect(self.addr),
        )
        .await?;

        async move {
            self.handler.on_connected(now.elapsed());

            let mut write_buf = Box::new([0u8; WRITE_BUF_LEN]);
            let handshake = Handshake::new(self.info_hash, self.peer_id);
            let hsz = handshake.serialize_unchecked_len(&mut *write_buf);
            with_timeout(
                "writing",
                rwtimeout,
                write
                    .write_all(&write_buf[..hsz])
                    .map_err(Error::WriteHandshake),
            )
            .await?;

            let mut read_buf = ReadBuf::new();
            let h = read_buf.read_handshake(&mut read, rwtimeout).await?;
            let handshake_supports_extended = h.supports_extended();
            trace!(
                peer_id=?h.peer_id,
                decoded_id=?try_decode_peer_id(h.peer_id),
                "connected",
            );
            if h.info_hash != self.info_hash {
                return Err(Error::WrongInfoHash);
            }

            if h.peer_id == self.peer_id {
                return Err(Error::ConnectingToOurselves);
            }

            self.handler.on_handshake(h, ckind).map_err(Error::Anyhow)?;

            self.manage_peer(ManagePeerArgs {
                handshake_supports_extended,
                read_buf,
                write_buf,
                read,
                write,
                outgoing_chan,
                have_broadcast,
            })
            .await
        }
        .instrument(trace_span!("", kind=%ckind))
        .await
    }

    async fn manage_peer(&self, args: ManagePeerArgs) -> Result<()> {
        let ManagePeerArgs {
            handshake_supports_extended,
            mut read_buf,
            mut write_buf,
            mut read,
            mut write,
            outgoing_chan,
            have_broadcast,
        } = args;

        use tokio::io::AsyncWriteExt;

        let rwtimeout = self
            .options
            .read_write_timeout
            .unwrap_or_else(|| Duration::from_secs(10));

        let extended_handshake: RwLock<Option<PeerExtendedMessageIds>> = RwLock::new(None);
        let extended_handshake_ref = &extended_handshake;
        let supports_extended = handshake_supports_extended;

        if supports_extended {
            let mut my_extended = ExtendedHandshake::new();
            my_extended.v = Some(ByteBuf(self.handler.client_name_and_version().as_bytes()));
            my_extended.yourip = Some(self.addr.ip().into());
            self.handler
                .update_my_extended_handshake(&mut my_extended)
                .map_err(Error::Anyhow)?;
            let my_extended = Message::Extended(ExtendedMessage::Handshake(my_extended));
            trace!("sending extended handshake: {:?}", &my_extended);
            let esz = my_extended.serialize(&mut *write_buf, &Default::default)?;
            with_timeout(
                "writing extended handshake",
                rwtimeout,
                write.write_all(&write_buf[..esz]).map_err(Error::Write),
            )
            .await?;
        }

        let writer = async move {
            let keep_alive_interval = self
                .options
                .keep_alive_interval
                .unwrap_or_else(|| Duration::from_secs(120));

            // The bitfield (an empty one to a peer we super-seed, see PATCHED.md 12) is the
            // first message after the handshakes, before the unchoke: a peer that gets a have
            // before any bitfield takes it for a bitfield omitted (libtorrent logs HAVE_NONE).
            if self.handler.should_send_bitfield() {
                let len = self
                    .handler
                    .serialize_bitfield_message_to_buf(&mut *write_buf)
                    .map_err(Error::Anyhow)?;
                with_timeout(
                    "writing bitfield",
                    rwtimeout,
                    write.write_all(&write_buf[..len]).map_err(Error::Write),
                )
                .await?;
                trace!("sent bitfield");
            }

            let len = Message::Unchoke.serialize(&mut *write_buf, &Default::default)?;
            with_timeout(
                "writing",
                rwtimeout,
                write.write_all(&write_buf[..len]).map_err(Error::Write),
            )
            .await?;
            trace!("sent unchoke");

            let mut queue = WriterQueue {
                outgoing_chan,
                have_broadcast,
                broadcast_closed: false,
                resend: Default::default(),
            };

            loop {
                let first = queue.next(&self.handler, keep_alive_interval).await?;

                tokio::task::yield_now().await;

                // swarmvm patch: every message already waiting goes out with the first in
                // one write, while the buffer has room for one more of the largest size.
                // Upstream wrote each message, every 9-byte have and 17-byte request
                // included, with a system call of its own.
                let mut len = 0;
                let mut uploaded = 0;
                let mut disconnect = None;
                let mut next = Some(first);
                while let Some(req) = next.take() {
                    trace!("about to send: {:?}", &req);
                    let ext_msg_ids = &|| {
                        extended_handshake_ref
                            .read()
                            .as_ref()
                            .map(|e| *e)
                            .unwrap_or_default()
                    };
                    let out = &mut write_buf[len..];

                    len += match req {
                        WriterRequest::Message(msg) => msg.serialize(out, ext_msg_ids)?,
                        WriterRequest::UtMetadata(utm) => {
                            Message::Extended(ExtendedMessage::UtMetadata(utm.as_borrowed()))
                                .serialize(out, ext_msg_ids)?
                        }
                        WriterRequest::UtPex(ut_pex) => {
                            Message::Extended(ExtendedMessage::UtPex(ut_pex.as_borrowed()))
                                .serialize(out, ext_msg_ids)?
                        }
                        WriterRequest::ReadChunkRequest(chunk) => {
                            #[allow(unused_mut)]
                            let mut skip_reading_for_e2e_tests = false;

                            #[cfg(test)]
                            {
                                use tracing::warn;
                                // This is poor-mans fault injection for running e2e tests.
                                use crate::tests::test_util::TestPeerMetadata;
                                let tpm = TestPeerMetadata::from_peer_id(self.peer_id);
                                use rand::RngExt;
                                if rand::rng().random_bool(tpm.disconnect_probability()) {
                                    return Err(Error::TestDisconnect);
                                }

                                #[allow(clippy::cast_possible_truncation)]
                                let sleep_ms = (rand::rng().random::<f64>()
                                    * (tpm.max_random_sleep_ms as f64))
                                    as u64;
                                if sleep_ms > 0 {
                                    tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
                                }

                                if rand::rng().random_bool(tpm.bad_data_probability()) {
                                    warn!(
                                        "will NOT actually read the data to simulate a malicious peer that sends garbage"
                                    );
                                    out.fill(0);
                                    skip_reading_for_e2e_tests = true;
                                }
                            }

                            // this whole section is an optimization
                            let preamble_len = serialize_piece_preamble(&chunk, out);
                            let full_len = preamble_len + chunk.size as usize;
                            if !skip_reading_for_e2e_tests {
                                self.spawner
                                    .chunk_io(|| {
                                        self.handler
                                            .read_chunk(&chunk, &mut out[preamble_len..full_len])
                                    })
                                    .await
                                    .map_err(Error::ReadChunk)?;
                            }

                            uploaded += chunk.size;
                            full_len
                        }
                        WriterRequest::Disconnect(res) => {
                            trace!("disconnect requested, closing writer");
                            disconnect = Some(res);
                            break;
                        }
                    };

                    if WRITE_BUF_LEN - len >= MAX_MSG_LEN {
                        next = queue.try_next(&self.handler);
                    }
                }

                if len > 0 {
                    // As long per message of the largest size as upstream gave one message,
                    // so that a slow peer is not dropped for being sent more at once.
                    #[allow(clippy::cast_possible_truncation)]
                    let bufferfuls = len.div_ceil(MAX_MSG_LEN) as u32;
                    with_timeout(
                        "writing",
                        rwtimeout * bufferfuls,
                        write.write_all(&write_buf[..len]).map_err(Error::Write),
                    )
                    .await?;
                }

                if uploaded > 0 {
                    self.handler.on_uploaded_bytes(uploaded)
                }

                match disconnect {
                    None => {}
                    Some(Ok(())) => return Err(Error::Disconnect),
                    Some(Err(e)) => return Err(Error::DisconnectWithSource(e)),
                }
            }

            // For type inference.
            #[allow(unreachable_code)]
            Ok::<_, Error>(())
        };

        let reader = async move {
            loop {
                let message = read_buf.read_message(&mut read, rwtimeout).await?;
                trace!("received: {:?}", &message);

                tokio::task::yield_now().await;

                if let Message::Extended(ExtendedMessage::Handshake(h)) = &message {
                    *extended_handshake_ref.write() = Some(h.peer_extended_messages());
                    self.handler
                        .on_extended_handshake(h)
                        .map_err(Error::Anyhow)?;
                } else {
                    self.handler
                        .on_received_message(message)
                        .await
                        .map_err(Error::Anyhow)?;
                }
            }

            // For type inference.
            #[allow(unreachable_code)]
            Ok::<_, Error>(())
        };

        tokio::select! {
            r = reader => {
                if let Err(e) = r.as_ref() {
                    trace!("reader finished with error: {e:#}");
                } else {
                    trace!("reader finished without error");
                }
                r
            }
            r = writer => {
                if let Err(e) = r.as_ref() {
                    trace!("writer finished with error: {e:#}");
                } else {
                    trace!("writer finished without error");
                }
                r
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_connect::StreamConnector;
    use crate::vectored_traits::AsyncReadVectoredIntoCompat;
    use librqbit_core::lengths::Lengths;
    use peer_binary_protocol::Request;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A peer that should hear of even pieces only, and whose chunks are all 7s; sent
    /// `bitfield`, if any, as a bitfield message.
    #[derive(Default)]
    struct Handler {
        uploaded: AtomicU64,
        bitfield: Option<Vec<u8>>,
    }

    impl PeerConnectionHandler for Handler {
        fn should_send_bitfield(&self) -> bool {
            self.bitfield.is_some()
        }
        fn serialize_bitfield_message_to_buf(&self, buf: &mut [u8]) -> anyhow::Result<usize> {
            let Some(bits) = &self.bitfield else {
                anyhow::bail!("no bitfield")
            };
            let len = Message::Bitfield(ByteBuf(&bits[..])).serialize(buf, &Default::default)?;
            Ok(len)
        }
        fn on_handshake(&self, _: Handshake, _: ConnectionKind) -> anyhow::Result<()> {
            Ok(())
        }
        fn on_extended_handshake(&self, _: &ExtendedHandshake<ByteBuf>) -> anyhow::Result<()> {
            Ok(())
        }
        async fn on_received_message(&self, _: Message<'_>) -> anyhow::Result<()> {
            Ok(())
        }
        fn should_transmit_have(&self, id: ValidPieceIndex) -> bool {
            id.get() % 2 == 0
        }
        fn on_uploaded_bytes(&self, bytes: u32) {
            self.uploaded.fetch_add(u64::from(bytes), Ordering::Relaxed);
        }
        fn read_chunk(&self, _: &ChunkInfo, buf: &mut [u8]) -> anyhow::Result<()> {
            buf.fill(7);
            Ok(())
        }
    }

    /// Keeps every write it is given, one entry per `poll_write`.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl tokio::io::AsyncWrite for Writes {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0.lock().unwrap().push(buf.to_vec());
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// The message ids in one write, checking that it holds whole messages only.
    fn message_ids(mut write: &[u8]) -> Vec<u8> {
        let mut ids = Vec::new();
        while !write.is_empty() {
            let len = u32::from_be_bytes(write[..4].try_into().unwrap()) as usize;
            assert!(len >= 1 && write.len() >= 4 + len, "a message cut in two");
            ids.push(write[4]);
            write = &write[4 + len..];
        }
        ids
    }

    #[tokio::test]
    async fn messages_waiting_together_go_out_in_one_write_each_bufferful() {
        const HAVE: u8 = 4;
        const REQUEST: u8 = 6;
        const PIECE: u8 = 7;
        let lengths = Lengths::new(64 * CHUNK, CHUNK as u32).unwrap();
        let piece = |i| lengths.validate_piece_index(i).unwrap();

        let (outgoing, outgoing_chan) = tokio::sync::mpsc::unbounded_channel();
        let (haves, have_broadcast) = tokio::sync::broadcast::channel(128);
        for i in 0..20 {
            haves.send(piece(i)).unwrap();
        }
        for index in 0..2 {
            let request = Request {
                index,
                begin: 0,
                length: CHUNK as u32,
            };
            outgoing
                .send(WriterRequest::Message(Message::Request(request)))
                .unwrap();
        }
        for i in 0..6 {
            let chunk = lengths.iter_chunk_infos(piece(i)).next().unwrap();
            outgoing
                .send(WriterRequest::ReadChunkRequest(chunk))
                .unwrap();
        }

        let (conn, writes) = run_writer(Handler::default(), outgoing_chan, have_broadcast).await;
        let ids: Vec<Vec<u8>> = writes.iter().map(|w| message_ids(w)).collect();
        assert_eq!(ids[0], [1], "the unchoke comes first, on its own");
        // 10 haves (odd pieces are filtered out), 2 requests and 6 pieces of 16 KiB: a
        // bufferful with four pieces, and the rest.
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(writes.iter().all(|w| w.len() <= WRITE_BUF_LEN));
        let all: Vec<u8> = ids[1..].concat();
        let count = |id| all.iter().filter(|&&i| i == id).count();
        assert_eq!(
            (count(HAVE), count(REQUEST), count(PIECE)),
            (10, 2, 6),
            "{ids:?}"
        );
        assert_eq!(all.len(), 18);
        assert_eq!(conn.handler.uploaded.load(Ordering::Relaxed), 6 * CHUNK);
    }

    /// Runs a connection with `handler` to a peer that never says anything and never hangs
    /// up, for half a second, from right after the handshake, with what is queued in
    /// `outgoing_chan` and `have_broadcast`; returns it and its writes, one entry per write.
    async fn run_writer(
        handler: Handler,
        outgoing_chan: tokio::sync::mpsc::UnboundedReceiver<WriterRequest>,
        have_broadcast: tokio::sync::broadcast::Receiver<ValidPieceIndex>,
    ) -> (PeerConnection<Handler>, Vec<Vec<u8>>) {
        let connector = StreamConnector::new(crate::stream_connect::StreamConnectorArgs {
            enable_tcp: true,
            ..Default::default()
        });
        let connector = Arc::new(connector.await.unwrap());
        let conn = PeerConnection::new(
            "127.0.0.1:1".parse().unwrap(),
            Id20::new([1; 20]),
            Id20::new([2; 20]),
            handler,
            None,
            BlockingSpawner::new(1),
            connector,
        );
        let (quiet, _peer) = tokio::io::duplex(64);
        let writes = Writes::default();
        let args = ManagePeerArgs {
            handshake_supports_extended: false,
            read_buf: ReadBuf::new(),
            write_buf: Box::new([0u8; WRITE_BUF_LEN]),
            read: Box::new(quiet.into_vectored_compat()),
            write: Box::new(writes.clone()),
            outgoing_chan,
            have_broadcast,
        };
        let run = tokio::time::timeout(Duration::from_millis(500), conn.manage_peer(args)).await;
        assert!(run.is_err(), "the connection ended: {run:?}");
        let writes = writes.0.lock().unwrap().clone();
        (conn, writes)
    }

    /// A super-seeder's first messages (PATCHED.md 12): the empty bitfield first, then the
    /// unchoke, then the haves that show pieces, queued before the writer started. With the
    /// haves first (or with no bitfield), libtorrent takes the first have for the end of an
    /// omitted bitfield (it logs HAVE_NONE).
    #[tokio::test]
    async fn an_empty_bitfield_goes_before_the_unchoke_and_the_haves_after() {
        const BITFIELD: u8 = 5;
        const UNCHOKE: u8 = 1;
        const HAVE: u8 = 4;
        let (outgoing, outgoing_chan) = tokio::sync::mpsc::unbounded_channel();
        let (_haves, have_broadcast) = tokio::sync::broadcast::channel(8);
        for piece in [3, 5] {
            outgoing
                .send(WriterRequest::Message(Message::Have(piece)))
                .unwrap();
        }
        let handler = Handler {
            bitfield: Some(vec![0; 1]),
            ..Default::default()
        };
        let (_conn, writes) = run_writer(handler, outgoing_chan, have_broadcast).await;
        let ids: Vec<Vec<u8>> = writes.iter().map(|w| message_ids(w)).collect();
        assert_eq!(
            ids,
            [vec![BITFIELD], vec![UNCHOKE], vec![HAVE, HAVE]],
            "{writes:?}"
        );
        assert_eq!(writes[0], [0, 0, 0, 2, BITFIELD, 0], "an empty bitfield");
    }

    const CHUNK: u64 = 16384;
}
