// SPDX-License-Identifier: MIT
pragma solidity 0.8.20;

/// A Chainlink-compatible USD price feed whose owner sets the answer. Aave's MockAggregator
/// fixes its price in the constructor, so a devnet that moves prices needs this instead.
/// Every update is a new round and emits Chainlink's own events, as a real aggregator does.
contract PriceFeed {
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    struct Round {
        int256 answer;
        uint256 updatedAt;
    }

    uint8 public constant decimals = 8;
    uint256 public constant version = 4;
    address public immutable owner;
    string public description;
    uint256 public latestRound;
    mapping(uint256 => Round) private rounds;

    constructor(string memory description_, int256 initialAnswer) {
        owner = msg.sender;
        description = description_;
        _setAnswer(initialAnswer);
    }

    function setAnswer(int256 answer) external {
        require(msg.sender == owner, "PriceFeed: not the owner");
        _setAnswer(answer);
    }

    function latestAnswer() external view returns (int256) {
        return rounds[latestRound].answer;
    }

    function latestTimestamp() external view returns (uint256) {
        return rounds[latestRound].updatedAt;
    }

    function getAnswer(uint256 roundId) external view returns (int256) {
        return rounds[roundId].answer;
    }

    function getTimestamp(uint256 roundId) external view returns (uint256) {
        return rounds[roundId].updatedAt;
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        return _roundData(uint80(latestRound));
    }

    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80) {
        require(rounds[roundId].updatedAt != 0, "No data present");
        return _roundData(roundId);
    }

    function _roundData(uint80 roundId) private view returns (uint80, int256, uint256, uint256, uint80) {
        Round storage round = rounds[roundId];
        // rounds start and end in the same transaction, so startedAt == updatedAt
        return (roundId, round.answer, round.updatedAt, round.updatedAt, roundId);
    }

    function _setAnswer(int256 answer) private {
        uint256 roundId = latestRound + 1;
        latestRound = roundId;
        rounds[roundId] = Round(answer, block.timestamp);
        emit NewRound(roundId, msg.sender, block.timestamp);
        emit AnswerUpdated(answer, roundId, block.timestamp);
    }
}
