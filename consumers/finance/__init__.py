"""Finance read models: committed and actual spend per cost center and budget period.

``spend`` holds the pure rules, ``processor`` the `budget-spend` processor that applies
BudgetCommitted, BudgetReleased and BudgetActualized, ``queries`` reads the spend back (for
the requisitions' budget check and `supplybus spend`).
"""
