// @generated-compatible: written in what PostgreSQL and SQLite share (text ids, UTC timestamps).

diesel::table! {
    /// Sharing sessions.
    sessions (id) {
        id -> Text,
        name -> Nullable<Text>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        last_activity_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
        end_reason -> Nullable<Text>,
        participant_count -> Integer,
        locked -> Bool,
        destination_lat -> Nullable<Double>,
        destination_lng -> Nullable<Double>,
        destination_radius_m -> Nullable<Double>,
        destination_label -> Nullable<Text>,
        destination_set_at -> Nullable<Timestamp>,
        e2e -> Bool,
        destination_sealed -> Nullable<Text>,
    }
}

diesel::table! {
    /// Participants of sessions; removed ones are kept until their session is purged.
    participants (id) {
        id -> Text,
        session_id -> Text,
        display_name -> Text,
        avatar_color -> Text,
        joined_at -> Timestamp,
        last_seen_at -> Timestamp,
        removed_at -> Nullable<Timestamp>,
        removed_reason -> Nullable<Text>,
    }
}

diesel::joinable!(participants -> sessions (session_id));
diesel::allow_tables_to_appear_in_same_query!(participants, sessions);
