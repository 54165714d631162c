//! The simulator's TL objects with every field spelled out once: users, messages, dialogs,
//! the config and the cloud-password parameters.

use grammers_tl_types as tl;

use super::state::{ChatPeer, Stored, User};

/// A user as `tl::types::User`; `is_self` for the viewer's own account.
pub(crate) fn user(user: &User, is_self: bool) -> tl::enums::User {
    tl::types::User {
        is_self,
        contact: !is_self,
        mutual_contact: !is_self,
        deleted: false,
        bot: user.bot_token.is_some(),
        bot_chat_history: false,
        bot_nochats: false,
        verified: false,
        restricted: false,
        min: false,
        bot_inline_geo: false,
        support: false,
        scam: false,
        apply_min_photo: false,
        fake: false,
        bot_attach_menu: false,
        premium: false,
        attach_menu_enabled: false,
        bot_can_edit: false,
        close_friend: false,
        stories_hidden: false,
        stories_unavailable: true,
        contact_require_premium: false,
        bot_business: false,
        bot_has_main_app: false,
        bot_forum_view: false,
        bot_forum_can_manage_topics: false,
        bot_can_manage_bots: false,
        bot_guestchat: false,
        bot_guard: false,
        id: user.id,
        access_hash: Some(user.access_hash),
        first_name: Some(user.first_name.clone()),
        last_name: user.last_name.clone(),
        username: user.username.clone(),
        phone: if is_self { user.phone.clone() } else { None },
        photo: None,
        status: Some(tl::types::UserStatusRecently { by_me: false }.into()),
        bot_info_version: user.bot_token.as_ref().map(|_| 1),
        restriction_reason: None,
        bot_inline_placeholder: None,
        lang_code: None,
        emoji_status: None,
        usernames: None,
        stories_max_id: None,
        color: None,
        profile_color: None,
        bot_active_users: None,
        bot_verification_icon: None,
        send_paid_messages_stars: None,
        linked_community_id: None,
    }
    .into()
}

/// A message of `owner`'s box as they see it.
pub(crate) fn message(owner: i64, stored: &Stored) -> tl::enums::Message {
    let _ = owner;
    tl::types::Message {
        out: stored.out,
        mentioned: false,
        media_unread: false,
        silent: false,
        post: stored.post,
        from_scheduled: false,
        legacy: false,
        edit_hide: false,
        pinned: false,
        noforwards: false,
        invert_media: false,
        offline: false,
        video_processing_pending: false,
        paid_suggested_post_stars: false,
        paid_suggested_post_ton: false,
        id: stored.id,
        from_id: (!stored.post).then(|| {
            tl::types::PeerUser {
                user_id: stored.from,
            }
            .into()
        }),
        from_boosts_applied: None,
        from_rank: None,
        peer_id: match stored.chat {
            None => tl::types::PeerUser {
                user_id: stored.peer,
            }
            .into(),
            Some(ChatPeer::Group(chat_id)) => tl::types::PeerChat { chat_id }.into(),
            Some(ChatPeer::Channel(channel_id)) => tl::types::PeerChannel { channel_id }.into(),
        },
        saved_peer_id: None,
        fwd_from: None,
        via_bot_id: None,
        via_business_bot_id: None,
        guestchat_via_from: None,
        reply_to: stored.reply_to.map(|id| {
            tl::types::MessageReplyHeader {
                reply_to_scheduled: false,
                reply_to_ephemeral: false,
                forum_topic: false,
                quote: false,
                reply_to_msg_id: Some(id),
                reply_to_peer_id: None,
                reply_from: None,
                reply_media: None,
                reply_to_top_id: None,
                quote_text: None,
                quote_entities: None,
                quote_offset: None,
                todo_item_id: None,
                poll_option: None,
            }
            .into()
        }),
        date: stored.date,
        message: stored.text.clone(),
        media: None,
        reply_markup: None,
        entities: (!stored.entities.is_empty()).then(|| stored.entities.clone()),
        views: None,
        forwards: None,
        replies: None,
        edit_date: stored.edit_date,
        post_author: None,
        grouped_id: None,
        reactions: None,
        restriction_reason: None,
        ttl_period: None,
        quick_reply_shortcut_id: None,
        effect: None,
        factcheck: None,
        report_delivery_until_date: None,
        paid_message_stars: None,
        suggested_post: None,
        schedule_repeat_period: None,
        summary_from_language: None,
        rich_message: None,
    }
    .into()
}

/// A private chat's dialog whose newest message is `top`.
/// Notification settings with nothing set.
pub(crate) fn notify_settings() -> tl::enums::PeerNotifySettings {
    tl::types::PeerNotifySettings {
        show_previews: None,
        silent: None,
        mute_until: None,
        ios_sound: None,
        android_sound: None,
        other_sound: None,
        stories_muted: None,
        stories_hide_sender: None,
        stories_ios_sound: None,
        stories_android_sound: None,
        stories_other_sound: None,
    }
    .into()
}

pub(crate) fn dialog(peer: i64, top: i32, pts: i32) -> tl::enums::Dialog {
    tl::types::Dialog {
        pinned: false,
        unread_mark: false,
        view_forum_as_messages: false,
        peer: tl::types::PeerUser { user_id: peer }.into(),
        top_message: top,
        read_inbox_max_id: top,
        read_outbox_max_id: top,
        unread_count: 0,
        unread_mentions_count: 0,
        unread_reactions_count: 0,
        unread_poll_votes_count: 0,
        notify_settings: notify_settings(),
        pts: Some(pts),
        draft: None,
        folder_id: None,
        ttl_period: None,
    }
    .into()
}

/// `help.getConfig`'s answer, with no DC options: grammers overwrites its stored addresses
/// with them, and the simulator must stay where it is.
pub(crate) fn config(now: i32) -> tl::enums::Config {
    tl::types::Config {
        default_p2p_contacts: false,
        preload_featured_stickers: false,
        revoke_pm_inbox: true,
        blocked_mode: false,
        force_try_ipv6: false,
        date: now,
        expires: now + 3600,
        test_mode: false,
        this_dc: 2,
        dc_options: Vec::new(),
        dc_txt_domain_name: "simulator.invalid".to_owned(),
        chat_size_max: 200,
        megagroup_size_max: 200_000,
        forwarded_count_max: 100,
        online_update_period_ms: 210_000,
        offline_blur_timeout_ms: 5000,
        offline_idle_timeout_ms: 30_000,
        online_cloud_timeout_ms: 300_000,
        notify_cloud_delay_ms: 30_000,
        notify_default_delay_ms: 1500,
        push_chat_period_ms: 60_000,
        push_chat_limit: 2,
        edit_time_limit: 172_800,
        revoke_time_limit: i32::MAX,
        revoke_pm_time_limit: i32::MAX,
        rating_e_decay: 2_419_200,
        stickers_recent_limit: 200,
        channels_read_media_period: 604_800,
        tmp_sessions: None,
        call_receive_timeout_ms: 20_000,
        call_ring_timeout_ms: 90_000,
        call_connect_timeout_ms: 30_000,
        call_packet_timeout_ms: 10_000,
        me_url_prefix: "https://t.me/".to_owned(),
        autoupdate_url_prefix: None,
        gif_search_username: None,
        venue_search_username: None,
        img_search_username: None,
        static_maps_provider: None,
        caption_length_max: 1024,
        message_length_max: 4096,
        webfile_dc_id: 4,
        suggested_lang_code: None,
        lang_pack_version: None,
        base_lang_pack_version: None,
        reactions_default: None,
        autologin_token: None,
    }
    .into()
}

/// `account.password` of an account with a cloud password (SRP over Telegram's prime).
pub(crate) fn password(
    salt1: Vec<u8>,
    salt2: Vec<u8>,
    p: Vec<u8>,
    srp_b: Vec<u8>,
    srp_id: i64,
    secure_random: Vec<u8>,
    hint: Option<String>,
) -> tl::enums::account::Password {
    let algo: tl::enums::PasswordKdfAlgo =
        tl::types::PasswordKdfAlgoSha256Sha256Pbkdf2Hmacsha512iter100000Sha256ModPow {
            salt1,
            salt2,
            g: 3,
            p,
        }
        .into();
    tl::types::account::Password {
        has_recovery: false,
        has_secure_values: false,
        has_password: true,
        current_algo: Some(algo.clone()),
        srp_b: Some(srp_b),
        srp_id: Some(srp_id),
        hint,
        email_unconfirmed_pattern: None,
        new_algo: algo,
        new_secure_algo: tl::types::SecurePasswordKdfAlgoUnknown {}.into(),
        secure_random,
        pending_reset_date: None,
        login_email_pattern: None,
    }
    .into()
}
