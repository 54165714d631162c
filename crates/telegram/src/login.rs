//! The login flows. `phone`: the phone number (step `phone`), the code Telegram sends to the
//! account's other devices (step `code`, asked again when wrong), and the cloud password when
//! the account has one (step `password`, asked again when wrong). `bot`: a bot token from
//! @BotFather (step `token`). `qr`: a `tg://login?token=…` QR code (step `qr`, shown again
//! with a new token before the old one expires) that the account's phone accepts (Settings →
//! Devices → Link Desktop Device); Telegram then says `updateLoginToken` and the token is
//! exported once more to get the authorization; then the cloud password as in `phone`.
//! grammers has no QR helper: `auth.exportLoginToken` is invoked raw. All end with step
//! `complete`; the login's session data is the
//! MTProto [`SessionSnapshot`](crate::session::SessionSnapshot).
//!
//! Each flow opens its own MTProto connection on a fresh session and closes it before
//! completing, so the login's client is the only connection with the key afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge_core::network::login::{CompletedLogin, FieldKind, InputField, LoginStep};
use bridge_core::network::{LoginProcess, NetworkError};
use grammers_client::client::{LoginToken, PasswordToken};
use grammers_client::peer::User;
use grammers_client::{tl, Client, InvocationError, SignInError};
use grammers_session::updates::UpdatesLike;
use tokio::task::JoinHandle;

use crate::client::{network_error, open, CALL_TIMEOUT};
use crate::config::{ApiCredentials, TelegramConfig, TestDc};
use crate::ids;
use crate::session::StoredSession;

/// What every login flow needs to open its connection: the config, the application's
/// credentials and, in tests, the simulator.
#[derive(Clone)]
pub struct Setup {
    /// The `network:` section.
    pub config: TelegramConfig,
    /// `api_id` / `api_hash`.
    pub credentials: ApiCredentials,
    /// The simulator new logins connect to (tests only).
    pub test_dc: Option<TestDc>,
}

impl Setup {
    fn open(&self) -> Connection {
        Connection::open(&self.config, &self.credentials, self.test_dc.as_ref())
    }
}

/// A connection opened for a login in progress.
struct Connection {
    client: Client,
    session: Arc<StoredSession>,
    pool: JoinHandle<()>,
}

impl Connection {
    fn open(
        config: &TelegramConfig,
        credentials: &ApiCredentials,
        test_dc: Option<&TestDc>,
    ) -> Self {
        // The updates of a login in progress are not needed: the login's client catches up.
        Self::open_with_updates(config, credentials, test_dc).0
    }

    /// [`Connection::open`], with the updates the connection receives.
    fn open_with_updates(
        config: &TelegramConfig,
        credentials: &ApiCredentials,
        test_dc: Option<&TestDc>,
    ) -> (Self, tokio::sync::mpsc::Receiver<UpdatesLike>) {
        let session = Arc::new(StoredSession::new_login(test_dc));
        let (client, updates, pool) = open(session.clone(), credentials.id, config);
        let connection = Self {
            client,
            session,
            pool,
        };
        (connection, updates)
    }

    /// Closes the connection and returns the finished login.
    async fn complete(self, user: &User, what: &str) -> Result<LoginStep, NetworkError> {
        let snapshot = self.session.snapshot();
        self.client.disconnect();
        if tokio::time::timeout(CALL_TIMEOUT, self.pool).await.is_err() {
            tracing::warn!("the login's Telegram connection did not close in time");
        }
        let name = display_name(user);
        let session = serde_json::to_value(snapshot)
            .map_err(|e| NetworkError::Remote(format!("could not keep the session: {e}")))?;
        Ok(LoginStep::Complete {
            step_id: "complete".to_owned(),
            instructions: format!("Logged in to Telegram as {name}{what}."),
            login: CompletedLogin {
                remote_id: ids::login_id(user.id().bare_id_unchecked()).0,
                remote_name: name,
                session,
            },
        })
    }

    fn close(self) {
        self.client.disconnect();
        self.pool.abort();
    }
}

/// A user's name as the login is shown: first and last name, else the username or phone.
fn display_name(user: &User) -> String {
    let name = user.full_name();
    if !name.trim().is_empty() {
        return name.trim().to_owned();
    }
    user.username()
        .map(|u| format!("@{u}"))
        .or_else(|| user.phone().map(|p| format!("+{p}")))
        .unwrap_or_else(|| user.id().to_string())
}

fn input(step_id: &str, instructions: String, id: &str, kind: FieldKind, name: &str) -> LoginStep {
    LoginStep::UserInput {
        step_id: step_id.to_owned(),
        instructions,
        fields: vec![InputField {
            id: id.to_owned(),
            kind,
            name: name.to_owned(),
            description: None,
        }],
    }
}

fn value(input: &BTreeMap<String, String>, key: &str) -> Result<String, NetworkError> {
    input
        .get(key)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| NetworkError::BadInput(format!("Send the {key}.")))
}

/// A call with [`CALL_TIMEOUT`].
async fn timed<T, E>(
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<Result<T, E>, NetworkError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| NetworkError::Remote("Telegram did not answer in time".to_owned()))
}

/// Where a `phone` login is.
enum Phone {
    /// Waiting for the number.
    Number,
    /// The code was sent; waiting for it.
    Code(LoginToken),
    /// The account has a cloud password; waiting for it.
    Password(PasswordToken),
}

/// A `phone` login in progress.
pub struct PhoneLogin {
    setup: Setup,
    connection: Option<Connection>,
    step: Phone,
}

impl PhoneLogin {
    /// A phone login.
    pub fn new(setup: Setup) -> Self {
        Self {
            setup,
            connection: None,
            step: Phone::Number,
        }
    }

    fn ask_number() -> LoginStep {
        input(
            "phone",
            "Send your phone number in international format (+44 7700 900123).".to_owned(),
            "phone",
            FieldKind::PhoneNumber,
            "Phone number",
        )
    }

    fn ask_code() -> LoginStep {
        input(
            "code",
            "Telegram sent a login code to your Telegram app (or by SMS). Send it here.".to_owned(),
            "code",
            FieldKind::Code,
            "Login code",
        )
    }

    fn ask_password(hint: Option<&str>) -> LoginStep {
        let hint = hint
            .filter(|h| !h.is_empty())
            .map(|h| format!(" (hint: {h})"))
            .unwrap_or_default();
        input(
            "password",
            format!("Your account has a cloud password (two-step verification). Send it{hint}."),
            "password",
            FieldKind::Password,
            "Cloud password",
        )
    }

    fn connection(&self) -> Result<&Connection, NetworkError> {
        self.connection.as_ref().ok_or_else(|| {
            NetworkError::Remote("the login lost its connection; start again".to_owned())
        })
    }

    async fn submit_number(&mut self, raw: &str) -> Result<LoginStep, NetworkError> {
        let number: String = raw
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        if number.trim_start_matches('+').len() < 5 {
            return Err(NetworkError::BadInput("That is not a phone number: send it in international format, such as +44 7700 900123.".to_owned()));
        }
        if self.connection.is_none() {
            self.connection = Some(self.setup.open());
        }
        let client = self.connection()?.client.clone();
        match timed(client.request_login_code(&number, &self.setup.credentials.hash)).await? {
            Ok(token) => {
                self.step = Phone::Code(token);
                Ok(Self::ask_code())
            }
            Err(InvocationError::Rpc(rpc)) if rpc.name == "PHONE_NUMBER_INVALID" => {
                Err(NetworkError::BadInput("Telegram does not know that phone number: check it and send it again in international format.".to_owned()))
            }
            Err(InvocationError::Rpc(rpc)) if rpc.name == "PHONE_NUMBER_BANNED" => {
                Err(NetworkError::BadInput("Telegram has banned that phone number.".to_owned()))
            }
            Err(InvocationError::Rpc(rpc)) if rpc.name == "API_ID_INVALID" => {
                Err(NetworkError::Remote("Telegram refused the bridge's api_id / api_hash: the bridge's administrator must check them (https://my.telegram.org)".to_owned()))
            }
            Err(error) => Err(network_error(&error)),
        }
    }

    async fn submit_code(
        &mut self,
        token: LoginToken,
        code: &str,
    ) -> Result<LoginStep, NetworkError> {
        let code: String = code.chars().filter(char::is_ascii_alphanumeric).collect();
        let client = self.connection()?.client.clone();
        match timed(client.sign_in(&token, &code)).await? {
            Ok(user) => self.finish(&user).await,
            Err(SignInError::PasswordRequired(password)) => {
                let step = Self::ask_password(password.hint());
                self.step = Phone::Password(password);
                Ok(step)
            }
            Err(SignInError::InvalidCode) => {
                self.step = Phone::Code(token);
                Err(NetworkError::BadInput("That code is not right (or it expired). Send the code again.".to_owned()))
            }
            Err(SignInError::SignUpRequired) => Err(NetworkError::BadInput(
                "This phone number has no Telegram account yet: sign up with an official Telegram app first.".to_owned(),
            )),
            Err(SignInError::InvalidPassword(_)) => Err(NetworkError::Remote("unexpected password error".to_owned())),
            Err(SignInError::Other(error)) => {
                self.step = Phone::Code(token);
                Err(network_error(&error))
            }
        }
    }

    async fn submit_password(
        &mut self,
        token: PasswordToken,
        password: &str,
    ) -> Result<LoginStep, NetworkError> {
        let client = self.connection()?.client.clone();
        match timed(client.check_password(token, password.as_bytes())).await? {
            Ok(user) => self.finish(&user).await,
            Err(SignInError::InvalidPassword(token)) => {
                self.step = Phone::Password(token);
                Err(NetworkError::BadInput(
                    "That password is not right. Send your cloud password again.".to_owned(),
                ))
            }
            Err(SignInError::Other(error)) => Err(network_error(&error)),
            Err(_) => Err(NetworkError::Remote(
                "unexpected answer to the password".to_owned(),
            )),
        }
    }

    async fn finish(&mut self, user: &User) -> Result<LoginStep, NetworkError> {
        let connection = self.connection.take().ok_or(NetworkError::NotLoggedIn)?;
        connection.complete(user, "").await
    }
}

#[async_trait::async_trait]
impl LoginProcess for PhoneLogin {
    async fn start(&mut self) -> Result<LoginStep, NetworkError> {
        Ok(Self::ask_number())
    }

    async fn submit_input(
        &mut self,
        input: BTreeMap<String, String>,
    ) -> Result<LoginStep, NetworkError> {
        match std::mem::replace(&mut self.step, Phone::Number) {
            Phone::Number => self.submit_number(&value(&input, "phone")?).await,
            Phone::Code(token) => match value(&input, "code") {
                Ok(code) => self.submit_code(token, &code).await,
                Err(e) => {
                    self.step = Phone::Code(token);
                    Err(e)
                }
            },
            Phone::Password(token) => match value(&input, "password") {
                Ok(password) => self.submit_password(token, &password).await,
                Err(e) => {
                    self.step = Phone::Password(token);
                    Err(e)
                }
            },
        }
    }

    async fn wait(&mut self) -> Result<LoginStep, NetworkError> {
        Err(NetworkError::Unsupported(
            "waiting in the phone login".to_owned(),
        ))
    }

    async fn cancel(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.close();
        }
    }
}

/// A `bot` login in progress.
pub struct BotLogin {
    setup: Setup,
}

impl BotLogin {
    /// A bot login.
    pub fn new(setup: Setup) -> Self {
        Self { setup }
    }
}

#[async_trait::async_trait]
impl LoginProcess for BotLogin {
    async fn start(&mut self) -> Result<LoginStep, NetworkError> {
        Ok(input(
            "token",
            "Send the token of your bot (from @BotFather).".to_owned(),
            "token",
            FieldKind::Token,
            "Bot token",
        ))
    }

    async fn submit_input(
        &mut self,
        input: BTreeMap<String, String>,
    ) -> Result<LoginStep, NetworkError> {
        let token = value(&input, "token")?;
        if !token.contains(':') || token.contains(char::is_whitespace) {
            return Err(NetworkError::BadInput(
                "That is not a bot token: @BotFather gives tokens like 123456:ABC-DEF.".to_owned(),
            ));
        }
        let connection = self.setup.open();
        match timed(
            connection
                .client
                .bot_sign_in(&token, &self.setup.credentials.hash),
        )
        .await
        {
            Ok(Ok(user)) => connection.complete(&user, " (a bot)").await,
            Ok(Err(InvocationError::Rpc(rpc))) if rpc.name.starts_with("ACCESS_TOKEN") => {
                connection.close();
                Err(NetworkError::BadInput(
                    "Telegram refused that bot token. Copy it again from @BotFather.".to_owned(),
                ))
            }
            Ok(Err(error)) => {
                connection.close();
                Err(network_error(&error))
            }
            Err(error) => {
                connection.close();
                Err(error)
            }
        }
    }

    async fn wait(&mut self) -> Result<LoginStep, NetworkError> {
        Err(NetworkError::Unsupported(
            "waiting in the bot login".to_owned(),
        ))
    }

    async fn cancel(&mut self) {}
}

/// How long before a QR token expires a new one is shown.
const QR_REFRESH_BEFORE: std::time::Duration = std::time::Duration::from_secs(5);

/// A `qr` login in progress: the QR code until the phone accepts it, then (through the
/// `phone` flow's steps) the cloud password if the account has one.
pub struct QrLogin {
    setup: Setup,
    updates: Option<tokio::sync::mpsc::Receiver<UpdatesLike>>,
    /// When the token shown expires.
    expires: tokio::time::Instant,
    /// The phone flow, for its connection and password step.
    phone: PhoneLogin,
}

/// Whether `updates` says that the phone accepted the login token.
fn is_login_token(updates: &UpdatesLike) -> bool {
    use tl::enums::{Update, Updates};
    match updates {
        UpdatesLike::Updates(Updates::UpdateShort(short)) => {
            matches!(short.update, Update::LoginToken)
        }
        UpdatesLike::Updates(Updates::Updates(tl::types::Updates { updates, .. })) => {
            updates.iter().any(|u| matches!(u, Update::LoginToken))
        }
        _ => false,
    }
}

impl QrLogin {
    /// A QR login.
    pub fn new(setup: Setup) -> Self {
        Self {
            phone: PhoneLogin::new(setup.clone()),
            setup,
            updates: None,
            expires: tokio::time::Instant::now(),
        }
    }

    /// Exports a login token: a new QR code to show, or the login's next step once the
    /// phone accepted the last one.
    async fn export(&mut self) -> Result<LoginStep, NetworkError> {
        use base64::Engine as _;
        let client = self.phone.connection()?.client.clone();
        let request = tl::functions::auth::ExportLoginToken {
            api_id: self.setup.credentials.id,
            api_hash: self.setup.credentials.hash.clone(),
            except_ids: Vec::new(),
        };
        match timed(client.invoke(&request)).await? {
            Ok(tl::enums::auth::LoginToken::Token(token)) => {
                let left = i64::from(token.expires) - crate::client::now_ms() / 1000;
                let left = std::time::Duration::from_secs(left.clamp(1, 600) as u64);
                self.expires = tokio::time::Instant::now() + left;
                let link = format!(
                    "tg://login?token={}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&token.token)
                );
                Ok(LoginStep::DisplayAndWait {
                    step_id: "qr".to_owned(),
                    instructions: "Scan this QR code with Telegram on your phone: Settings → Devices → Link Desktop Device. A new code replaces it before it expires.".to_owned(),
                    display: bridge_core::network::login::Display::Qr(link),
                })
            }
            Ok(tl::enums::auth::LoginToken::Success(success)) => {
                let tl::enums::auth::Authorization::Authorization(authorization) =
                    success.authorization
                else {
                    return Err(NetworkError::BadInput(
                        "This Telegram account has to be signed up in an official app first."
                            .to_owned(),
                    ));
                };
                self.finish(&client, authorization.user).await
            }
            Ok(tl::enums::auth::LoginToken::MigrateTo(_)) => Err(NetworkError::Unsupported(
                "QR logins of accounts on another Telegram data center (use `login phone`)"
                    .to_owned(),
            )),
            Err(InvocationError::Rpc(rpc)) if rpc.name == "SESSION_PASSWORD_NEEDED" => {
                let password = timed(client.invoke(&tl::functions::account::GetPassword {}))
                    .await?
                    .map_err(|e| network_error(&e))?;
                let tl::enums::account::Password::Password(password) = password;
                let token = PasswordToken::new(password);
                let step = PhoneLogin::ask_password(token.hint());
                self.phone.step = Phone::Password(token);
                self.updates = None;
                Ok(step)
            }
            Err(error) => Err(network_error(&error)),
        }
    }

    /// The phone accepted the token: the account's own user, as grammers' sign-in records it.
    async fn finish(
        &mut self,
        client: &Client,
        user: tl::enums::User,
    ) -> Result<LoginStep, NetworkError> {
        use grammers_session::types::{PeerAuth, PeerInfo, UpdateState, UpdatesState};
        use grammers_session::Session as _;
        let session = self.phone.connection()?.session.clone();
        if let tl::enums::User::User(raw) = &user {
            let me = PeerInfo::User {
                id: raw.id,
                auth: raw.access_hash.map(PeerAuth::from_hash),
                bot: Some(raw.bot),
                is_self: Some(true),
            };
            session
                .cache_peer(me)
                .await
                .map_err(|e| NetworkError::Remote(e.to_string()))?;
        }
        if let Ok(Ok(tl::enums::updates::State::State(state))) =
            timed(client.invoke(&tl::functions::updates::GetState {})).await
        {
            let all = UpdateState::All(UpdatesState {
                pts: state.pts,
                qts: state.qts,
                date: state.date,
                seq: state.seq,
                channels: Vec::new(),
            });
            session
                .set_update_state(all)
                .await
                .map_err(|e| NetworkError::Remote(e.to_string()))?;
        }
        let user = User::from_raw(client, user);
        self.phone.finish(&user).await
    }
}

#[async_trait::async_trait]
impl LoginProcess for QrLogin {
    async fn start(&mut self) -> Result<LoginStep, NetworkError> {
        let (connection, updates) = Connection::open_with_updates(
            &self.setup.config,
            &self.setup.credentials,
            self.setup.test_dc.as_ref(),
        );
        self.phone.connection = Some(connection);
        self.updates = Some(updates);
        self.export().await
    }

    async fn submit_input(
        &mut self,
        input: BTreeMap<String, String>,
    ) -> Result<LoginStep, NetworkError> {
        self.phone.submit_input(input).await
    }

    async fn wait(&mut self) -> Result<LoginStep, NetworkError> {
        let refresh_at = self
            .expires
            .checked_sub(QR_REFRESH_BEFORE)
            .unwrap_or(self.expires);
        let updates = self.updates.as_mut().ok_or_else(|| {
            NetworkError::Remote("the login lost its connection; start again".to_owned())
        })?;
        loop {
            tokio::select! {
                received = updates.recv() => match received {
                    Some(received) if is_login_token(&received) => return self.export().await,
                    Some(_) => {}
                    None => return Err(NetworkError::Remote("the login lost its connection; start again".to_owned())),
                },
                () = tokio::time::sleep_until(refresh_at) => return self.export().await,
            }
        }
    }

    async fn cancel(&mut self) {
        self.updates = None;
        self.phone.cancel().await;
    }
}
