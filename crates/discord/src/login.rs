//! The `token` login flow: the user sends a bot token, which is checked with
//! `GET /users/@me`. Step IDs: `token` (user input), `complete`. The session of a completed
//! login is `{"token": "..."}`.

use std::collections::BTreeMap;

use bridge_core::network::login::{CompletedLogin, FieldKind, InputField, LoginStep};
use bridge_core::network::{LoginProcess, NetworkError};

use crate::connector::{network_error, Endpoint, CALL_TIMEOUT};
use crate::ids;

/// What a user is told when Discord rejects a token.
pub const REJECTED_TOKEN: &str = "Discord rejected that token. Log in with the token of a bot: \
create an application in the Discord developer portal (https://discord.com/developers/applications), \
add a bot and copy its token. User account tokens are not supported.";

/// A `token` login in progress.
pub struct TokenLogin {
    endpoint: Endpoint,
}

impl TokenLogin {
    /// A login checking tokens against `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }

    fn ask() -> LoginStep {
        LoginStep::UserInput {
            step_id: "token".to_owned(),
            instructions: "Send the token of your Discord bot (from the developer portal, under Bot → Token)."
                .to_owned(),
            fields: vec![InputField {
                id: "token".to_owned(),
                kind: FieldKind::Token,
                name: "Bot token".to_owned(),
                description: Some("User account tokens are not supported.".to_owned()),
            }],
        }
    }
}

/// Normalises what the user pasted: trims it and drops a `Bot ` prefix.
pub fn clean_token(raw: &str) -> Option<String> {
    let token = raw.trim();
    let token = token.strip_prefix("Bot ").unwrap_or(token).trim();
    (!token.is_empty() && !token.contains(char::is_whitespace)).then(|| token.to_owned())
}

#[async_trait::async_trait]
impl LoginProcess for TokenLogin {
    async fn start(&mut self) -> Result<LoginStep, NetworkError> {
        Ok(Self::ask())
    }

    async fn submit_input(&mut self, input: BTreeMap<String, String>) -> Result<LoginStep, NetworkError> {
        let token = input
            .get("token")
            .and_then(|raw| clean_token(raw))
            .ok_or_else(|| NetworkError::BadInput(REJECTED_TOKEN.to_owned()))?;
        let http = self.endpoint.http(&token);
        let me = match tokio::time::timeout(CALL_TIMEOUT, http.get_current_user()).await {
            Ok(Ok(me)) => me,
            Ok(Err(error)) => {
                return Err(match network_error(&error) {
                    NetworkError::NotLoggedIn | NetworkError::BadInput(_) => {
                        NetworkError::BadInput(REJECTED_TOKEN.to_owned())
                    }
                    other => other,
                })
            }
            Err(_) => return Err(NetworkError::Remote("Discord did not answer in time".to_owned())),
        };
        if !me.bot {
            return Err(NetworkError::BadInput(REJECTED_TOKEN.to_owned()));
        }
        let name = me.global_name.clone().unwrap_or_else(|| me.name.clone());
        Ok(LoginStep::Complete {
            step_id: "complete".to_owned(),
            instructions: format!("Logged in as the bot {name}."),
            login: CompletedLogin {
                remote_id: ids::login_id(me.id).0,
                remote_name: name,
                session: serde_json::json!({ "token": token }),
            },
        })
    }

    async fn wait(&mut self) -> Result<LoginStep, NetworkError> {
        Err(NetworkError::Unsupported("waiting in the token login".to_owned()))
    }

    async fn cancel(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_cleaned() {
        let cases = [
            ("abc.def", Some("abc.def")),
            ("  abc.def\n", Some("abc.def")),
            ("Bot abc.def", Some("abc.def")),
            ("", None),
            ("   ", None),
            ("two words", None),
        ];
        for (raw, want) in cases {
            assert_eq!(clean_token(raw).as_deref(), want, "{raw:?}");
        }
    }
}
