# Loads the course's pytest plugin: the `student` fixture (your files in this folder),
# the `problem` marker, and failure messages that show your own code only.
pytest_plugins = ["autograder.testing.plugin"]
