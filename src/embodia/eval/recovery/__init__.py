"""Policy-in-the-loop collection: recovery demonstrations from the states a learned policy
reaches. It sits above the cerebellum and eval (it loads checkpoints and drives policies) and
hands the recording itself to data/recording.py, so the data pillar never knows a model."""
