-- When an SMTP message's terminating dot was handed to the kernel, on its way to the relay.
--
-- SMTP has no idempotency key. A worker killed while it waited for the relay's 250 left the
-- row 'sending' and the retry sent the message again (59 of 60 kills aimed at that instant in
-- a chaos run). From the dot on, a healthy relay holds the whole message and takes it whatever
-- becomes of the sender, so the SMTP mailer notes the instant here, in the same tick as the
-- dot's write (workers/node/handover-journal.ts), and a retry that finds the row 'sending' with
-- handed_over_at set records it sent instead of sending it again. A refusal or a broken session
-- seen by a live sender clears it, and the retry sends again under the same Message-ID.
alter table email_sends add column handed_over_at timestamptz;
