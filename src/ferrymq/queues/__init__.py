"""Queue types implementing core's QueueType seam."""
