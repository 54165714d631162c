//! Signing in: `auth.sendCode` (a random five-digit code per request, readable through the
//! control API), `auth.signIn` (PHONE_CODE_INVALID, PHONE_CODE_EXPIRED,
//! SESSION_PASSWORD_NEEDED), the cloud password by SRP (`account.getPassword` over Telegram's
//! 2048-bit prime with g = 3, `auth.checkPassword` recomputing the client's proof with
//! grammers' own `calculate_2fa` from the password and the `secure_random` the simulator
//! handed out), bot tokens, and `auth.logOut`.

use grammers_tl_types as tl;
use tl::Serializable as _;

use super::mtproto::key_id;
use super::rpc::{bad, RpcResult};
use super::state::Data;

/// Telegram's 2048-bit safe prime for the cloud password (the one its servers send).
const PRIME_HEX: &str = "c71caeb9c6b1c9048e6c522f70f13f73980d40238e3e21c14934d037563d930f48198a0aa7c14058229493d22530f4dbfa336f6e0ac925139543aed44cce7c3720fd51f69458705ac68cd4fe6b6b13abdc9746512969328454f18faf8c595f642477fe96bb2a941d5bcd1d4ac8cc49880708fa9b378e3c4f3a9060bee67cf9a4a4a695811051907e162753b56b0f6b410dba74d8a84b2a14b3144e0ef1284754fd17ed950d5965b4b9dd46582db1178d169c6bc465b0d6ff9ca3928fef5b9ae4e418fc15e83ebea0f87fa9ff5eed70050ded2849f47bf959d956850ce929851f0d8115f635b105ee2e4e15d04b2454bf6f4fadf034b10403119cd8e3b92fcc5b";

fn prime() -> Vec<u8> {
    (0..PRIME_HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&PRIME_HEX[i..i + 2], 16).unwrap_or_default())
        .collect()
}

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// The SRP parameters handed to one key for one account.
pub(crate) struct Srp {
    user: i64,
    srp_id: i64,
    salt1: Vec<u8>,
    salt2: Vec<u8>,
    srp_b: Vec<u8>,
    secure_random: Vec<u8>,
}

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

pub(super) fn authorization(data: &Data, user: i64) -> Vec<u8> {
    tl::enums::auth::Authorization::Authorization(tl::types::auth::Authorization {
        setup_password_required: false,
        otherwise_relogin_days: None,
        tmp_sessions: None,
        future_auth_token: None,
        user: data.user_tl(user, user),
    })
    .to_bytes()
}

pub(super) fn send_code(data: &mut Data, request: tl::functions::auth::SendCode) -> RpcResult {
    if request.api_id <= 0 || request.api_hash.is_empty() {
        return Err(bad("API_ID_INVALID"));
    }
    let phone = digits(&request.phone_number);
    if !data
        .users
        .values()
        .any(|u| u.phone.as_deref() == Some(&phone) && u.bot_token.is_none())
    {
        return Err(bad("PHONE_NUMBER_INVALID"));
    }
    let code = format!("{:05}", rand::random::<u32>() % 100_000);
    let hash: String = random_bytes(8).iter().map(|b| format!("{b:02x}")).collect();
    data.codes
        .insert(hash.clone(), super::state::SentCode { phone, code });
    Ok(tl::enums::auth::SentCode::Code(tl::types::auth::SentCode {
        r#type: tl::types::auth::SentCodeTypeApp { length: 5 }.into(),
        phone_code_hash: hash,
        next_type: None,
        timeout: None,
    })
    .to_bytes())
}

pub(super) fn sign_in(
    data: &mut Data,
    key: &[u8; 256],
    request: tl::functions::auth::SignIn,
) -> RpcResult {
    let Some(sent) = data.codes.get(&request.phone_code_hash).cloned() else {
        return Err(bad("PHONE_CODE_EXPIRED"));
    };
    if sent.phone != digits(&request.phone_number) {
        return Err(bad("PHONE_NUMBER_INVALID"));
    }
    if request.phone_code.as_deref() != Some(sent.code.as_str()) {
        return Err(bad("PHONE_CODE_INVALID"));
    }
    let Some(user) = data
        .users
        .values()
        .find(|u| u.phone.as_deref() == Some(&sent.phone))
        .cloned()
    else {
        return Err(bad("PHONE_NUMBER_UNOCCUPIED"));
    };
    data.codes.remove(&request.phone_code_hash);
    if user.password.is_some() {
        data.awaiting_password.insert(key_id(key), user.id);
        return Err((401, "SESSION_PASSWORD_NEEDED".to_owned()));
    }
    data.sign_in(key, user.id);
    Ok(authorization(data, user.id))
}

pub(super) fn get_password(data: &mut Data, key: &[u8; 256]) -> RpcResult {
    let id = key_id(key);
    let Some(user) = data.awaiting_password.get(&id).copied() else {
        return Err(bad("PASSWORD_NOT_NEEDED"));
    };
    let mut srp_b = random_bytes(256);
    srp_b[0] = 0x42; // below the prime
    let srp = Srp {
        user,
        srp_id: rand::random::<i64>(),
        salt1: random_bytes(40),
        salt2: random_bytes(16),
        srp_b,
        secure_random: random_bytes(256),
    };
    let hint = data.users.get(&user).and_then(|u| u.password_hint.clone());
    let answer = super::tl_build::password(
        srp.salt1.clone(),
        srp.salt2.clone(),
        prime(),
        srp.srp_b.clone(),
        srp.srp_id,
        srp.secure_random.clone(),
        hint,
    );
    data.srp.insert(id, srp);
    Ok(answer.to_bytes())
}

pub(super) fn check_password(
    data: &mut Data,
    key: &[u8; 256],
    request: tl::functions::auth::CheckPassword,
) -> RpcResult {
    let id = key_id(key);
    let tl::enums::InputCheckPasswordSrp::Srp(input) = request.password else {
        return Err(bad("PASSWORD_HASH_INVALID"));
    };
    let Some(srp) = data.srp.get(&id).filter(|srp| srp.srp_id == input.srp_id) else {
        return Err(bad("SRP_ID_INVALID"));
    };
    let Some(password) = data.users.get(&srp.user).and_then(|u| u.password.clone()) else {
        return Err(bad("PASSWORD_HASH_INVALID"));
    };
    let (m1, g_a) = grammers_crypto::two_factor_auth::calculate_2fa(
        &srp.salt1,
        &srp.salt2,
        &prime(),
        &3,
        srp.srp_b.clone(),
        srp.secure_random.clone(),
        password,
    );
    if input.m1 != m1 || input.a != g_a {
        return Err(bad("PASSWORD_HASH_INVALID"));
    }
    let user = srp.user;
    data.srp.remove(&id);
    data.awaiting_password.remove(&id);
    data.sign_in(key, user);
    Ok(authorization(data, user))
}

pub(super) fn import_bot(
    data: &mut Data,
    key: &[u8; 256],
    request: tl::functions::auth::ImportBotAuthorization,
) -> RpcResult {
    let Some(bot) = data
        .users
        .values()
        .find(|u| u.bot_token.as_deref() == Some(request.bot_auth_token.as_str()))
        .map(|u| u.id)
    else {
        return Err(bad("ACCESS_TOKEN_INVALID"));
    };
    data.sign_in(key, bot);
    Ok(authorization(data, bot))
}

pub(super) fn log_out(data: &mut Data, key: &[u8; 256]) -> RpcResult {
    let id = key_id(key);
    if let Some((_, user)) = data.keys.get_mut(&id) {
        *user = None;
    }
    Ok(tl::enums::auth::LoggedOut::Out(tl::types::auth::LoggedOut {
        future_auth_token: None,
    })
    .to_bytes())
}

/// `auth.exportLoginToken`: a new token to show as a QR code, or — once the account's
/// phone accepted the last one — the authorization (or SESSION_PASSWORD_NEEDED).
pub(super) fn export_login_token(data: &mut Data, key: &[u8; 256]) -> RpcResult {
    let id = key_id(key);
    let accepted = data
        .qr_tokens
        .iter()
        .find(|(_, t)| t.key == id && t.accepted_by.is_some())
        .map(|(token, t)| (token.clone(), t.accepted_by));
    if let Some((token, Some(user))) = accepted {
        data.qr_tokens.remove(&token);
        let has_password = data.users.get(&user).is_some_and(|u| u.password.is_some());
        if has_password {
            data.awaiting_password.insert(id, user);
            return Err((401, "SESSION_PASSWORD_NEEDED".to_owned()));
        }
        data.sign_in(key, user);
        let authorization = authorization(data, user);
        let mut cursor = tl::Cursor::from_slice(&authorization);
        let authorization =
            <tl::enums::auth::Authorization as tl::Deserializable>::deserialize(&mut cursor)
                .map_err(|_| bad("AUTH_INVALID"))?;
        return Ok(
            tl::enums::auth::LoginToken::Success(tl::types::auth::LoginTokenSuccess {
                authorization,
            })
            .to_bytes(),
        );
    }
    let token: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
    let expires = super::state::now() + data.qr_token_seconds;
    data.qr_tokens.insert(
        token.clone(),
        super::state::QrToken {
            key: id,
            expires,
            accepted_by: None,
        },
    );
    Ok(
        tl::enums::auth::LoginToken::Token(tl::types::auth::LoginToken { expires, token })
            .to_bytes(),
    )
}
