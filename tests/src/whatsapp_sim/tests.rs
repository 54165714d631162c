//! The simulator's own checks: its phone vouches for a companion the way whatsapp-rust's
//! pairing code verifies.

use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore::pair::{DeviceState, PairUtils};

use super::phone::{parse_qr, Phone};

fn companion() -> DeviceState {
    let mut adv_secret_key = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut adv_secret_key[..]);
    DeviceState {
        identity_key: KeyPair::generate(&mut rand_wa::rng()),
        noise_key: KeyPair::generate(&mut rand_wa::rng()),
        adv_secret_key,
    }
}

#[test]
fn the_phone_vouches_for_the_companion_of_a_qr_code_as_whatsapp_rust_checks_it() {
    let device = companion();
    let text = PairUtils::make_qr_data(
        &device,
        "2@ref",
        whatsapp_rust::pair_code::CompanionWebClientType::Chrome,
    );
    let qr = parse_qr(&text).expect("a QR code");
    assert_eq!(qr.reference, "2@ref");
    assert_eq!(
        &qr.noise_key[..],
        device.noise_key.public_key.public_key_bytes()
    );
    let identity = Phone::new().vouch(&qr, 3).expect("vouch");
    let (_signed, key_index) =
        PairUtils::do_pair_crypto(&device, &identity).expect("whatsapp-rust accepts the pairing");
    assert_eq!(key_index, 3);

    // A phone that read another QR code (another ADV secret) is refused.
    let other = companion();
    let other_qr = parse_qr(&PairUtils::make_qr_data(
        &other,
        "2@x",
        whatsapp_rust::pair_code::CompanionWebClientType::Chrome,
    ))
    .expect("qr");
    let forged = Phone::new().vouch(&other_qr, 1).expect("vouch");
    assert!(PairUtils::do_pair_crypto(&device, &forged).is_err());
}

#[test]
fn malformed_qr_codes_are_refused() {
    for text in ["", "a,b", "ref,!!,!!,!!", "ref,AAAA,AAAA,AAAA"] {
        assert!(parse_qr(text).is_err(), "{text:?}");
    }
}
