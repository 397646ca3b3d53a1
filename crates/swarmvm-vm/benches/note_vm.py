"""The design note's VM, as plain Python dicts: the baseline for swarmvm-vm's execute bench.

Prints register_student actions per second (best of several runs) as JSON on one line.
Usage: python3 note_vm.py [ACTIONS_PER_RUN] [RUNS] [ACTIONS_PER_CONTRACT]
With ACTIONS_PER_CONTRACT 1, every action is its own contract, as the note executes them;
otherwise all actions go to one execute_smart_contract call, Python's fastest case.
"""
import json
import sys
import time


class VM:
    def __init__(self):
        self.state = {}
        self.operations = {}

    def register_operation(self, name, func):
        self.operations[name] = func

    def execute_smart_contract(self, actions):
        for action in actions:
            op = action["action"]
            if op in self.operations:
                self.operations[op](self, action)
            else:
                print("Unknown operation", op)


def register_student(vm, action):
    student = action["student"]
    vm.state.setdefault("students", {})[student["id"]] = student


def add_course(vm, action):
    course = action["course"]
    vm.state.setdefault("courses", {})[course["id"]] = course


def vote_proposal(vm, action):
    proposal = action["proposal"]
    proposals = vm.state.setdefault("proposals", {})
    entry = proposals.setdefault(proposal["id"], {"description": proposal["description"], "votes": 0})
    entry["votes"] += 1


def generate_nft(vm, action):
    nft = action["nft"]
    vm.state.setdefault("nfts", {})[nft["id"]] = nft


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    per_contract = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    actions = [
        {"action": "register_student",
         "student": {"id": f"S{i:07}", "name": "John Doe", "department": "Computer Science"}}
        for i in range(n)
    ]
    best = float("inf")
    for _ in range(runs):
        vm = VM()
        for name, f in [("register_student", register_student), ("add_course", add_course),
                        ("vote_proposal", vote_proposal), ("generate_nft", generate_nft)]:
            vm.register_operation(name, f)
        if per_contract > 0:
            contracts = [{"actions": actions[i:i + per_contract]} for i in range(0, n, per_contract)]
            start = time.perf_counter()
            for contract in contracts:
                vm.execute_smart_contract(contract["actions"])
        else:
            start = time.perf_counter()
            vm.execute_smart_contract(actions)
        best = min(best, time.perf_counter() - start)
        assert len(vm.state["students"]) == n
    print(json.dumps({"actions": n, "seconds": best, "actions_per_sec": n / best}))


if __name__ == "__main__":
    main()
