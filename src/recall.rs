//! Recall's API, as this server uses it: creating a bot whose realtime endpoint is this
//! server's own websocket, reading a bot, asking a bot to leave its call, and listing a
//! recording's async media (`media`).
//!
//! [`Bots`] is what both `POST /api/bots` and `recall-frames bot create` call, so the two
//! build the same request the same way (`bots`). Below it, the HTTP client and Recall's
//! answers (`client`), and the URLs a bot is given (`endpoint`).

mod bots;
mod client;
mod endpoint;
pub mod media;

pub use self::bots::{BotError, BotRequest, Bots, DELETE_MEDIA, FETCH_MEDIA, InvalidBotRequest};
pub use self::client::{BotId, RecallClient, RecallError};
