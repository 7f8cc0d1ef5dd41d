"""Prompt templates, one pair per benchmark (docs/eval.md shows them rendered).

``raw`` mode is for base models and SFT checkpoints served without a chat template, as in the
seed: plain completion, "Problem:/Solution:" framing, final answer in ``\\boxed{}``. Unlike
the seed it stops at the next "Problem:"/"Question:" so a few-shot run-on never supplies the
graded answer. ``chat`` mode is one user message for instruct/thinking models; the model's
``<think>`` block is stripped by the graders.
"""

# Two worked examples written for this project (not taken from any benchmark split).
GSM8K_FEWSHOT = """Problem:
A baker makes 4 trays of 12 muffins each. She sells 30 muffins. How many muffins are left?

Solution:
She makes 4 * 12 = 48 muffins. After selling 30, she has 48 - 30 = 18 muffins left.
Therefore the final answer is \\boxed{18}.

Problem:
Tom reads 15 pages a day for 6 days, then 20 pages on the seventh day. How many pages does he read?

Solution:
In the first 6 days he reads 15 * 6 = 90 pages. Adding the seventh day gives 90 + 20 = 110 pages.
Therefore the final answer is \\boxed{110}.

"""

GSM8K_RAW = GSM8K_FEWSHOT.replace("{", "{{").replace("}", "}}") + "Problem:\n{question}\n\nSolution:\n"
GSM8K_CHAT = "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."

MATH_RAW = (
    "Solve the following math problem. Show your reasoning, then give the final answer "
    "in \\boxed{{}}.\n\nProblem:\n{question}\n\nSolution:\n"
)
MATH_CHAT = "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."

GPQA_RAW = (
    "Answer the following multiple-choice question. Reason step by step, then put only the "
    "letter of the correct option in \\boxed{{}}.\n\nQuestion:\n{question}\n\nSolution:\n"
)
GPQA_CHAT = (
    "Answer the following multiple-choice question. Think step by step before answering. "
    "The last line of your response should be of the form 'Answer: $LETTER' where LETTER is "
    "one of A, B, C, D.\n\n{question}"
)

RAW_STOP = ("\n\nProblem:", "\nProblem:", "\n\nQuestion:")
