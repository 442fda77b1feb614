//! The API driven in process: the real router (`tower::ServiceExt::oneshot`) over a real store,
//! SQLite and PostgreSQL alike, with a `ManualClock`, so behaviour that depends on time (expiry,
//! the step-up window, review due dates, lock backoff, extensions) is tested by advancing the clock
//! instead of waiting for it, and the workers' passes are run when a test says so.
//!
//! `api_suite!` runs each test body once per backend, the way the store suite does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails loudly on anything unexpected"
)]

mod access;
mod attestation;
mod clock;
mod drills;
mod harness;
mod limits;
mod lockdown;
mod reviews;
mod routes;
mod throttle;
mod workers;

use harness::Backend;

macro_rules! api_suite {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    crate::harness::run(crate::Backend::Sqlite, crate::$module::$name);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    crate::harness::run(crate::Backend::Postgres, crate::$module::$name);
                }
            )*
        }
    };
}

api_suite!(
    clock::a_step_up_lasts_its_window_and_not_a_moment_longer,
    clock::a_grant_ends_at_its_end_and_its_credential_with_it,
    clock::an_approved_extension_moves_the_end_and_the_reaper_keeps_to_it,
    clock::a_request_nobody_approves_times_out,
    clock::an_overdue_emergency_review_blocks_the_next_emergency_use,
    clock::failures_lock_an_account_with_backoff_and_the_lock_ends,
    access::a_token_without_the_credential_scope_cannot_collect_a_credential,
    access::a_read_token_cannot_change_any_sign_in_factor,
    access::replacing_an_authenticator_needs_a_fresh_step_up_with_it,
    access::a_wrong_current_password_is_a_failed_sign_in,
    access::a_reset_ends_every_token_of_the_person,
    access::disabling_a_person_revokes_their_grants_at_the_target,
    access::the_owner_may_revoke_the_roles_grants,
    access::deny_and_cancelling_anothers_request_need_a_step_up,
    access::a_token_typed_into_the_wrong_field_never_reaches_the_log,
    access::bodies_must_be_json_objects,
    access::out_of_range_numbers_are_a_400,
    access::free_text_refuses_what_reads_differently,
    routes::a_read_only_token_is_refused_every_route_that_changes_anything,
    throttle::failures_from_one_source_never_lock_out_another,
    throttle::a_locked_account_still_steps_up_and_wrong_codes_end_only_the_session,
    throttle::refusals_while_locked_are_one_event_per_window,
    limits::a_request_past_its_deadline_gets_503_and_https_answers_carry_hsts,
    workers::the_reaper_sleeps_until_its_next_due_item,
    lockdown::a_lockdown_revokes_everything_in_scope_and_refuses_requests_until_lifted,
    lockdown::a_lockdown_of_every_role_covers_each_and_is_lifted_as_one,
    lockdown::lockdown_bad_input_is_refused_and_changes_nothing,
    lockdown::a_lockdown_interrupted_by_a_crash_is_finished_by_the_reconciler,
    attestation::attestation_lapse_blocks_a_request,
    attestation::a_changed_role_file_needs_a_fresh_attestation,
    drills::a_token_drill_goes_through_approval_and_the_broker_exercises_and_revokes_it,
    drills::only_owners_and_reviewers_drill_and_bad_input_changes_nothing,
    drills::an_emergency_drill_does_not_hold_up_its_runners_emergency_use,
    drills::an_overdue_drill_alerts_once_per_due_date,
    drills::a_drill_cut_off_between_its_steps_is_finished_by_the_next_pass,
    reviews::bad_reviews_are_refused_and_change_nothing,
    reviews::the_requester_never_reviews_their_own_use,
    reviews::a_follow_up_stays_open_and_misuse_is_loud,
    reviews::a_final_review_lifts_the_emergency_block,
    reviews::an_overdue_review_alerts_once_then_escalates_once,
    reviews::the_evidence_proves_every_event_against_the_signed_checkpoint,
    attestation::an_expired_role_refuses_even_when_attested,
    access::a_name_kept_for_the_broker_is_refused_for_a_user,
);
