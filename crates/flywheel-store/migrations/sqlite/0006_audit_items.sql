-- Items that `flywheel audit --push-review` puts in a model's review queue: a row of its data
-- whose label looks wrong. `label` holds the suggested label and `given_label` the one the data
-- gave, so the reviewer sees both; served predictions leave it NULL.
ALTER TABLE predictions ADD COLUMN given_label TEXT;
