"""What test modules use: the `student` adapter, comparisons with teaching messages, device checks.

Shipped to students with the public tests; imports only torch and the standard library.
"""
