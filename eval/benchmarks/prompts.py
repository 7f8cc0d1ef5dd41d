"""Prompt templates: this project's (``project-v1``), one pair per benchmark, then the protocol
presets' (docs/eval.md shows them rendered, with their sources).

``raw`` mode is for base models and SFT checkpoints served without a chat template, as in the
reference run: plain completion, "Problem:/Solution:" framing, final answer in ``\\boxed{}``. Unlike
the reference run it stops at the next "Problem:"/"Question:" so a few-shot run-on never supplies the
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

# --------------------------------------------------------------------------- protocol presets
# Each block below reproduces one published protocol's prompt text verbatim; eval/presets.py wires
# them to datasets, sampling and graders, and docs/eval.md cites the exact source file.

# The reference run (docs/reference_run.md §6; its scripts/eval_reasoning_sglang.py at commit
# f5a982a): raw completions, no stop sequences. Its two GSM8K exemplars are GSM8K train problems.
SEED_VERSION = "seed-f5a982a"
SEED_HEADER = (
    "Answer the following problem. Work out the reasoning, then put the final answer in \\boxed{{}}.\n\n"
)
SEED_GSM8K_FEWSHOT = (
    "Problem: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?\n"
    "Solution: Natalia sold 48/2 = 24 clips in May. Altogether she sold 48 + 24 = 72 clips. Therefore the "
    "final answer is \\boxed{72}.\n\n"
    "Problem: Weng earns $12 an hour for babysitting. Yesterday, she babysat for 50 minutes. How much did "
    "she earn?\n"
    "Solution: Weng worked 50/60 = 5/6 hours. She earned 12 * 5/6 = 10 dollars. Therefore the final answer "
    "is \\boxed{10}.\n\n"
)
SEED_GSM8K_RAW = SEED_GSM8K_FEWSHOT.replace("{", "{{").replace("}", "}}") + "Problem: {question}\nSolution:"
SEED_MATH_RAW = SEED_HEADER + "Problem:\n{question}\n\nSolution:"
SEED_GPQA_RAW = (
    "Answer the multiple-choice science question. Work out the reasoning, then put only the option "
    "letter in \\boxed{{}}.\n\nQuestion:\n{question}\n\nSolution:"
)

# lm-evaluation-harness `gsm8k_cot` (lm_eval/tasks/gsm8k/gsm8k-cot.yaml, version 3.0): 8 fixed
# chain-of-thought exemplars (Wei et al. 2022), "Q: ...\nA: ..." joined by a blank line, greedy,
# generation until "Q:" / "</s>" / "<|im_end|>".
LM_EVAL_GSM8K_COT_VERSION = "lm-eval-gsm8k-cot-v3"
_LM_EVAL_COT_SHOTS = (
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are "
     "done, there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must "
     "have been 21 - 15 = 6. The answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in "
     "total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After "
     "eating 35, they had 74 - 35 = 39. The answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many "
     "lollipops did Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny "
     "20 - 12 = 8. The answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does "
     "he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. "
     "5 + 4 = 9. The answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed each day, from "
     "monday to thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
     "computers were added. 9 + 20 is 29. The answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How "
     "many golf balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing "
     "2 more, he had 35 - 2 = 33 golf balls. The answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 "
     "dollars left. 23 - 15 is 8. The answer is 8."),
)  # fmt: skip
LM_EVAL_GSM8K_COT_RAW = (
    "".join(f"Q: {q}\nA: {a}\n\n" for q, a in _LM_EVAL_COT_SHOTS).replace("{", "{{").replace("}", "}}")
    + "Q: {question}\nA:"
)
LM_EVAL_GSM8K_COT_STOP = ("Q:", "</s>", "<|im_end|>")

# lighteval (src/lighteval/tasks/tasks/math_500.py MATH_QUERY_TEMPLATE, version 2, and
# gpqa.py gpqa_instruct_prompt for "gpqa:diamond", version 1): one user turn, no stop sequence.
LIGHTEVAL_MATH500_VERSION = "lighteval-math500-v2"
LIGHTEVAL_MATH500 = (
    "Solve the following problem. The final line of your response MUST be of the following format:\n"
    '"ANSWER: $ANSWER" (without quotes) where $ANSWER is the final answer. Think step by step before '
    "answering.\n\n{question}"
)
LIGHTEVAL_GPQA_VERSION = "lighteval-gpqa-diamond-v1"
LIGHTEVAL_GPQA = (
    "Answer the following multiple choice question. The last line of your response should be of the "
    "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by "
    "step before answering.\n\n{question}"
)
LIGHTEVAL_GPQA_OPTION = "{letter}) {text}"
