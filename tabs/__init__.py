"""The UI: one module per tab. Tabs build Requests and call runners; they never touch torch devices."""
