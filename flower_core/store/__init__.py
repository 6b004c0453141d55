"""What is kept on disk: run folders, logs, the app's settings."""
