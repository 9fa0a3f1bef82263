"""The cerebellum: vision-language-action policies that turn a meta-skill instruction plus
what the robot sees and feels into action chunks."""
