"""The notifications service: turns payment outcomes into receipts. It needs customers'
names and emails but never asks the customers service at run time: it keeps a local replica
fed by CustomerUpdated events."""
