"""YADTQ's process management: the supervisor and the scheduler it runs."""
