-- The instance sending a notification: while its claim (next_attempt_at
-- moved ahead) runs, no other instance sends the notification; a claim of
-- an instance known to be gone is released at once.
ALTER TABLE notifications ADD COLUMN claimed_by TEXT COLLATE "C";
